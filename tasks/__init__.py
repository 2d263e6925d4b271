"""Ferryman's release steps and what they work on: the spec (`spec.py`), images and
registries, the platforms and their targets and routers, analysis, strategies, windows and
tag policies. Nothing here imports `flows/`."""
