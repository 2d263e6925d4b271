"""Ferryman's Prefect flows and its command line."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The checkout: deployment runs work in it, and relative spec paths are taken from it."""
SPECS = ROOT / "deployments"
"""The apps' release specs, one `<app>/release.yaml` each."""
