"""Verification of a new version: measurements, the pure decision, and the Prometheus provider."""
