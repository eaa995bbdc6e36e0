"""Tessera's gRPC services: issuer, validator, registry, and what they share."""
