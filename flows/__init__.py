"""Ferryman's Prefect flows and its command line."""
