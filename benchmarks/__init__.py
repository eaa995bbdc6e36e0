"""Benchmarks that print figures for the README; ``make bench`` runs them."""
