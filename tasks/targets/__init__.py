"""Deploy targets: one module per platform behind the `Target` protocol of `base.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.errors import SpecError
from tasks.targets.base import InFlight, Progress, Role, Target, TargetStatus, Version, Workload

if TYPE_CHECKING:
    from tasks.registries import RegistryAuth
    from tasks.spec import ReleaseSpec

__all__ = [
    "InFlight", "Progress", "Role", "Target", "TargetStatus", "Version", "Workload",
    "get_target",
]


def get_target(spec: ReleaseSpec, auth: RegistryAuth | None = None, client=None) -> Target:
    """Build the Target for a spec's `target.kind`; an unknown kind is an error, not a default."""
    if spec.target.kind == "swarm":
        from tasks.targets.swarm import SwarmTarget

        return SwarmTarget(spec, auth=auth, client=client)
    if spec.target.kind == "kubernetes":
        from tasks.targets.kubernetes import KubernetesTarget

        # Pods pull with the namespace's imagePullSecrets, as the cluster's own users' do:
        # the registry credentials are not the target's to hand out.
        return KubernetesTarget(spec, api_client=client)
    raise SpecError(f"target.kind: no target of kind {spec.target.kind!r}")
