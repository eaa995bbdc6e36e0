"""The tessera command line."""
