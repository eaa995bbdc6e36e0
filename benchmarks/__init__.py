"""Benchmarks that print the figures quoted in the README; ``make bench``
runs them at full size, the test suite at smoke size."""
