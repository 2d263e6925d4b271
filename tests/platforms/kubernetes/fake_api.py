"""An in-memory Kubernetes namespace behind the `KubernetesApi` calls the target makes.

It keeps Deployments and Services as the API returns them (plain dicts), applies the target's
JSON patches to them, and plays the Deployment controller and the kubelet at once: after every
change each Deployment has `replicas` pods of its template, ready unless their image is in
`broken` (then they crash-loop, as kubelet reports it). After every change it also records
which images answer on the app's Service (its selector over the ready pods), so a test asserts
the largest share a version ever had of what users could reach.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable

from tasks.errors import TargetError
from tasks.platforms.kubernetes.api import KubernetesApi
from tasks.platforms.kubernetes.target import selects


def _set(document: dict, path: str, value: object) -> None:
    """JSON patch `add`/`replace` at a JSON pointer (objects and list indexes)."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


class FakeKubernetesApi(KubernetesApi):
    """One namespace's Deployments, Services and pods, in memory."""

    def __init__(self, namespace: str, address: str, broken: set[str] | None = None) -> None:
        # No API client: every call the target makes is answered below.
        self.namespace = namespace
        self.address = address
        """The app's Service, whose answers `exposure` records."""
        self.broken = broken if broken is not None else set()
        """Images whose containers crash on start."""
        self.objects: dict[tuple[str, str], dict] = {}
        self.pods: dict[str, list[dict]] = {}
        self.exposure: list[dict[str, float]] = []
        self.calls: list[str] = []
        self._version = 0

    # -- the calls of KubernetesApi ----------------------------------------------------------

    def read(self, kind: str, name: str) -> dict | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def modify(self, kind: str, name: str, change: Callable[[dict], list[dict]],
               doing: str) -> dict:
        current = self.read(kind, name)
        if current is None:
            raise TargetError(f"{kind} {name} does not exist in namespace {self.namespace}; "
                              f"cannot {doing}")
        operations = change(current)
        if not operations:
            return current
        for operation in operations:
            assert operation["op"] in ("add", "replace"), operation
            if operation["path"] == "/metadata/resourceVersion":
                assert operation["value"] == current["metadata"]["resourceVersion"]
                continue
            _set(current, operation["path"], copy.deepcopy(operation["value"]))
        self._store(kind, current, spec_changed=any(
            o["path"].startswith("/spec") for o in operations))
        self.calls.append(f"patch {kind} {name}")
        return self.read(kind, name)

    def delete(self, kind: str, name: str) -> None:
        if self.objects.pop((kind, name), None) is None:
            return
        if kind == "deployment":
            self.pods.pop(name, None)
        self.calls.append(f"delete {kind} {name}")
        self._settle()

    def apply(self, manifest: dict) -> None:
        kind = manifest["kind"].lower()
        name = manifest["metadata"]["name"]
        current = self.read(kind, name)
        merged = copy.deepcopy(manifest)
        if current is not None:  # server-side apply: the fields given, over what is there
            merged["metadata"] = current["metadata"] | {
                k: v for k, v in manifest["metadata"].items() if k != "annotations"}
            merged["metadata"]["annotations"] = (current["metadata"].get("annotations") or {}) \
                | (manifest["metadata"].get("annotations") or {})
        self._store(kind, merged, spec_changed=current is None
                    or current.get("spec") != manifest.get("spec"))
        self.calls.append(f"apply {kind} {name}")

    def pod_names(self) -> set[str]:
        return {p["metadata"]["name"] for pods in self.pods.values() for p in pods}

    def pods_of(self, deployment: dict) -> list[dict]:
        return copy.deepcopy(self.pods.get(deployment["metadata"]["name"], []))

    # -- the controller and the kubelet ------------------------------------------------------

    def _store(self, kind: str, document: dict, spec_changed: bool) -> None:
        metadata = document.setdefault("metadata", {})
        self._version += 1
        metadata["resourceVersion"] = str(self._version)
        metadata.setdefault("uid", f"uid-{kind}-{metadata['name']}")
        if kind == "deployment":
            metadata["generation"] = metadata.get("generation", 0) + bool(spec_changed)
        self.objects[(kind, metadata["name"])] = document
        self._settle()

    def _settle(self) -> None:
        """Every Deployment at its spec at once; then who answers on the app's Service."""
        for (kind, name), deployment in self.objects.items():
            if kind != "deployment":
                continue
            spec = deployment["spec"]
            template = spec["template"]
            wanted = spec.get("replicas", 1)
            digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
            images = [c["image"] for c in template["spec"]["containers"]]
            crashing = any(image in self.broken for image in images)
            self.pods[name] = [self._pod(f"{name}-{digest[:8]}-{i}", template, crashing)
                               for i in range(wanted)]
            ready = 0 if crashing else wanted
            deployment["status"] = {
                "observedGeneration": deployment["metadata"].get("generation", 0),
                "replicas": wanted, "updatedReplicas": wanted, "readyReplicas": ready,
                "availableReplicas": ready,
            }
        self._record_exposure()

    def _pod(self, name: str, template: dict, crashing: bool) -> dict:
        state = ({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
                 if crashing else {"running": {}})
        return {
            "metadata": {"name": name,
                         "labels": dict(template.get("metadata", {}).get("labels") or {})},
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "conditions": [{"type": "Ready", "status": "False" if crashing else "True"}],
                "containerStatuses": [{"name": c["name"], "state": state}
                                      for c in template["spec"]["containers"]],
            },
        }

    def _record_exposure(self) -> None:
        service = self.objects.get(("service", self.address))
        selector = dict((service or {}).get("spec", {}).get("selector") or {})
        answering = [p for pods in self.pods.values() for p in pods
                     if p["status"]["conditions"][0]["status"] == "True"
                     and selects(selector, p["metadata"]["labels"])]
        shares: dict[str, float] = {}
        for pod in answering:
            image = pod["spec"]["containers"][0]["image"]
            shares[image] = shares.get(image, 0.0) + 100.0 / len(answering)
        self.exposure.append(shares)

    def max_share(self, image: str) -> float:
        """The most of the app's Service's answers pods of `image` ever gave."""
        return max((e.get(image, 0.0) for e in self.exposure), default=0.0)
