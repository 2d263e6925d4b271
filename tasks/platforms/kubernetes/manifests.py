"""An app's Kubernetes manifests (`deployments/<app>/k8s/`), read without a cluster.

The spec check reads them to find the Deployment's replica count (the canary weights
depend on it); the target applies them, with server-side apply, when the app is new.
A problem is a SpecError naming the file and the document, never found out half-way
through a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.errors import SpecError

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Manifests:
    """Every object of an app's manifests folder, in file order, and its Deployment."""

    folder: Path
    objects: tuple[dict, ...]
    deployment: dict

    @property
    def replicas(self) -> int:
        return int(self.deployment.get("spec", {}).get("replicas", 1))


def container_index(template: dict, container: str | None, where: str) -> int:
    """The index of the released container in a pod template: `container` by name, or
    the first. Raises SpecError naming `where`."""
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise SpecError(f"{where}: the pod template has no containers")
    if container is None:
        return 0
    names = [c.get("name") for c in containers]
    if container not in names:
        raise SpecError(f"{where}: no container {container!r} (containers: {names})")
    return names.index(container)


def load_manifests(folder: Path, deployment: str, namespace: str | None,
                   container: str | None) -> Manifests:
    """Read every YAML document under `folder` (sorted by file name) and find the
    Deployment named `deployment`. Objects name no namespace or the target's."""
    files = sorted(f for f in folder.iterdir() if f.suffix in SUFFIXES and f.is_file())
    objects: list[dict] = []
    found = None
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as e:
            raise SpecError(f"target.manifests: {file}: cannot read it: {e}") from None
        for i, doc in enumerate(documents):
            if doc is None:
                continue
            where = f"target.manifests: {file.name}: document {i}"
            if not isinstance(doc, dict) or not all(
                    doc.get(key) for key in ("apiVersion", "kind")) or not isinstance(
                    doc.get("metadata"), dict) or not doc["metadata"].get("name"):
                raise SpecError(f"{where}: not a Kubernetes object (apiVersion, kind and "
                                "metadata.name are required)")
            theirs = doc["metadata"].get("namespace")
            if theirs is not None and namespace is not None and theirs != namespace:
                raise SpecError(f"{where}: metadata.namespace {theirs!r} is not the "
                                f"target's namespace {namespace!r}")
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment:
                template = (doc.get("spec") or {}).get("template") or {}
                container_index(template, container, f"{where}: spec.template")
                replicas = (doc.get("spec") or {}).get("replicas", 1)
                if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
                    raise SpecError(f"{where}: spec.replicas: want a count of at least 1, "
                                    f"got {replicas!r}")
                found = doc
            objects.append(doc)
    if found is None:
        kinds = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
        raise SpecError(f"target.manifests: no Deployment {deployment!r} in {folder} "
                        f"(found: {', '.join(kinds) or 'nothing'})")
    return Manifests(folder, tuple(objects), found)
