"""Kubernetes' router: replica counts behind the app's Service, and its selector.

A canary's pods carry every label of the stable ones, so the app's Service sends them
their share of connections (kube-proxy picks an endpoint at random per connection): the
share is set by the canary Deployment's replica count. Blue-green switches the Service's
selector to the preview's pods and back, one patch each way: atomic, and instant for new
connections; the stable Deployment keeps its full size meanwhile, so switching back is
as quick as switching.
"""

from __future__ import annotations

from tasks.platforms.kubernetes.target import KubernetesTarget
from tasks.routers.replicas import give_share
from tasks.targets.base import Progress, Role


class KubernetesReplicasRouter:
    def __init__(self, target: KubernetesTarget) -> None:
        self.target = target

    def set_weight(self, weight: int, progress: Progress) -> float:
        return give_share(self.target, weight, f"Service {self.target.service}", progress)

    def switch(self, to: Role, progress: Progress) -> None:
        self.target.lead_service(Role.PREVIEW if to is Role.PREVIEW else Role.STABLE,
                                 progress)
