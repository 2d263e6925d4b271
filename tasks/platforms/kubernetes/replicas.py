"""Kubernetes' replicas router: shares by replica counts behind the app's Service, its
selector, and the preview's own Service.

A canary's pods are made without the labels of the app's Service's selector; the router adds
them in the patch that sizes the canary, so the Service sends them their share of connections
(kube-proxy picks an endpoint at random per connection): the share is set by the canary
Deployment's replica count. A preview answers on `<service>-preview` (the manifests' own, or
one the router makes with the app's Service's ports and removes with the preview). Blue-green
switches the app's Service's selector to the preview's pods and back, one patch each way:
atomic, and instant for new connections; the stable Deployment keeps its full size meanwhile,
so switching back is as quick as switching.
"""

from __future__ import annotations

import json

from tasks.platforms.kubernetes.target import (
    PREFIX,
    SELECTOR,
    KubernetesTarget,
    as_json,
    role_selector,
)
from tasks.routers.replicas import canary_size
from tasks.targets.base import Progress, Role

CREATED = f"{PREFIX}created"
"""On a preview Service the router made itself (and so removes with the preview)."""


class KubernetesReplicasRouter:
    def __init__(self, target: KubernetesTarget) -> None:
        self.target = target
        self.k8s = target.k8s

    def preview_service(self) -> str:
        return f"{self.target.service}-{Role.PREVIEW.value}"

    def prepare(self, role: Role, progress: Progress) -> None:
        """`<service>-preview` selects the preview's pods: the one in the manifests (or made
        before) has its selector set; otherwise one is made with the app's Service's ports."""
        if role is not Role.PREVIEW:
            return
        selector = role_selector(self.target.app, Role.PREVIEW)
        name = self.preview_service()
        if self.k8s.read("service", name) is not None:
            self.k8s.modify("service", name,
                            lambda s: [] if s["spec"].get("selector") == selector else
                            [{"op": "replace", "path": "/spec/selector", "value": selector}],
                            f"lead Service {name} to the preview")
            return
        main = self.k8s.read("service", self.target.service) or {"spec": {}}
        ports = [{k: v for k, v in p.items() if k != "nodePort"}
                 for p in main["spec"].get("ports") or []]
        progress(f"creating Service {name} for the preview")
        self.k8s.apply({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": selector, "annotations": {CREATED: "true"}},
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
        })

    def set_weight(self, weight: int, progress: Progress) -> float:
        replicas, got, line = canary_size(weight, self.target.replicas,
                                          f"Service {self.target.service}")
        progress(line)
        self.target.reshape(Role.CANARY, progress, replicas=replicas,
                            labels=self.target.main_selector())
        return got

    def switch(self, to: Role, progress: Progress) -> None:
        """Point the app's Service at `to`'s pods alone, in one patch of its selector.

        PREVIEW: the preview's selector, the Service's own kept in an annotation of the
        same patch; STABLE: the Service's own selector back. Nothing restarts: kube-proxy
        moves new connections to the other pods as soon as it sees the endpoints change.
        """
        service = self.target.service
        preview = role_selector(self.target.app, Role.PREVIEW)

        def change(current: dict) -> list[dict]:
            annotations = dict(current["metadata"].get("annotations") or {})
            selector = dict(current["spec"].get("selector") or {})
            if to is Role.PREVIEW:
                if selector == preview:
                    return []
                annotations.setdefault(SELECTOR, as_json(selector))
                selector = preview
            else:
                kept = annotations.pop(SELECTOR, None)
                if kept is None:
                    return []
                selector = json.loads(kept)
            return [{"op": "replace", "path": "/spec/selector", "value": selector},
                    {"op": "add", "path": "/metadata/annotations", "value": annotations}]

        progress(f"leading Service {service} to the {to.value} pods")
        self.k8s.modify("service", service, change, f"switch Service {service} to the "
                                                    f"{to.value}")

    def clean_up(self, role: Role, progress: Progress) -> None:
        """A preview's Service that the router made goes with the preview."""
        if role is not Role.PREVIEW:
            return
        service = self.k8s.read("service", self.preview_service())
        if service is not None and CREATED in (service["metadata"].get("annotations") or {}):
            progress(f"removing Service {self.preview_service()}")
            self.k8s.delete("service", self.preview_service())
