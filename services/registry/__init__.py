"""The registry: system of record for frontdoors, trust stores, certificates
and the revocation log."""
