"""Ferryman's release steps: each module handles one thing (images, targets, analysis)."""
