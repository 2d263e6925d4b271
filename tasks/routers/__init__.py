"""Traffic routers: one module per platform behind the `Router` protocol of `base.py`."""

from __future__ import annotations

from tasks.errors import SpecError
from tasks.routers.base import Router
from tasks.targets.base import Target

__all__ = ["Router", "get_router"]


def get_router(target: Target) -> Router:
    """The router of a target's platform; an unknown platform is an error, not a default."""
    from tasks.targets.kubernetes import KubernetesTarget
    from tasks.targets.swarm import SwarmTarget

    if isinstance(target, SwarmTarget):
        from tasks.routers.swarm import SwarmRouter

        return SwarmRouter(target)
    if isinstance(target, KubernetesTarget):
        from tasks.routers.kubernetes import KubernetesRouter

        return KubernetesRouter(target)
    raise SpecError(f"no traffic router for a target of type {type(target).__name__}")
