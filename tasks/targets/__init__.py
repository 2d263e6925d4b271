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
    "get_target", "validate_target",
]


def validate_target(spec: ReleaseSpec) -> None:
    """Check the orchestration files a spec names, and that the platform can give the
    strategy's traffic shares; raises SpecError. Touches no platform."""
    from tasks.routers.replicas import check_weights
    from tasks.spec import CanaryStrategy

    if spec.target.kind == "swarm":
        from tasks.targets.compose import load_service

        try:
            definition = load_service(spec.target.stack_file, spec.target.service)
        except SpecError as e:
            raise SpecError(f"target: {e}") from None
        replicas = definition.service.deploy.replicas
    elif spec.target.kind == "kubernetes":
        from tasks.targets.manifests import load_manifests

        if spec.target.manifests is None:
            return  # the size is the cluster's: the router checks the weights against it
        replicas = load_manifests(spec.target.manifests, spec.target.deployment,
                                  spec.target.namespace, spec.target.container).replicas
    else:
        raise SpecError(f"target.kind: no target of kind {spec.target.kind!r}")
    if isinstance(spec.strategy, CanaryStrategy):
        check_weights(spec.strategy.weights(), replicas, "strategy.steps")


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
