"""Swarm's replicas router: shares by replica counts behind the app's DNS name, and network
aliases.

The app's address is its stable service's name (endpoint_mode dnsrr: one A record per task).
A canary service joins it with the name as a network alias, in the same update that sizes it,
and gets the share of its tasks; a preview service answers on its own name until the switch
gives it the alias. An alias is part of a task's definition, so Swarm cannot move a running
task's address: the switch starts the preview's tasks again with the alias (new ones first)
and scales the stable service to zero, and the switch back scales the stable service up
again from its image, already on the node.
"""

from __future__ import annotations

from tasks.platforms.swarm.target import SwarmTarget
from tasks.routers.replicas import canary_size
from tasks.targets.base import Progress, Role


class SwarmReplicasRouter:
    def __init__(self, target: SwarmTarget) -> None:
        self.target = target

    def prepare(self, role: Role, progress: Progress) -> None:
        """A preview's own address is its service's name: nothing to make."""

    def set_weight(self, weight: int, progress: Progress) -> float:
        replicas, got, line = canary_size(weight, self.target.replicas, self.target.name)
        progress(line)
        self.target.reshape(Role.CANARY, progress, replicas=replicas,
                            aliases=[self.target.name] if replicas else [])
        return got

    def switch(self, to: Role, progress: Progress) -> None:
        status = self.target.status()
        if to is Role.PREVIEW:
            self.target.reshape(Role.PREVIEW, progress, aliases=[self.target.name])
            self.target.scale(Role.STABLE, 0, progress)
            return
        stable = status.workload(Role.STABLE)
        if stable is not None and stable.desired < self.target.replicas:
            self.target.scale(Role.STABLE, self.target.replicas, progress)
        preview = status.workload(Role.PREVIEW)
        if preview is not None and preview.on_app_address:
            self.target.scale(Role.PREVIEW, 0, progress)

    def clean_up(self, role: Role, progress: Progress) -> None:
        """Nothing of the router's outlives a service: its aliases go with its tasks."""
