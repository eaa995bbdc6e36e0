"""Benchmarks of Tessera run as separate processes; see enforcement.py."""
