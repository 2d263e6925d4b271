"""Swarm's router: replica counts behind the app's DNS name, and network aliases.

The app's address is its stable service's name (endpoint_mode dnsrr: one A record per
task). A canary service carries that name as a network alias, so it gets the share of its
tasks; a preview service gets the alias at the switch. An alias is part of a task's
definition, so Swarm cannot move a running task's address: the switch starts the preview's
tasks again with the alias (new ones first) and scales the stable service to zero, and the
switch back scales the stable service up again from its image, already on the node.
"""

from __future__ import annotations

from tasks.platforms.swarm.target import SwarmTarget
from tasks.routers.replicas import give_share
from tasks.targets.base import Progress, Role


class SwarmReplicasRouter:
    def __init__(self, target: SwarmTarget) -> None:
        self.target = target

    def set_weight(self, weight: int, progress: Progress) -> float:
        return give_share(self.target, weight, self.target.name, progress)

    def switch(self, to: Role, progress: Progress) -> None:
        status = self.target.status()
        if to is Role.PREVIEW:
            self.target.set_app_address(Role.PREVIEW, True, progress)
            self.target.scale(Role.STABLE, 0, progress)
            return
        stable = status.workload(Role.STABLE)
        if stable is not None and stable.desired < self.target.replicas:
            self.target.scale(Role.STABLE, self.target.replicas, progress)
        preview = status.workload(Role.PREVIEW)
        if preview is not None and preview.on_app_address:
            self.target.scale(Role.PREVIEW, 0, progress)
