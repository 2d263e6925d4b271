"""Deploy targets: one module per platform behind the `Target` protocol of `base.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.errors import SpecError
from tasks.targets.base import Progress, Target, TargetStatus, Version

if TYPE_CHECKING:
    from tasks.registries import RegistryAuth
    from tasks.spec import ReleaseSpec

__all__ = ["Progress", "Target", "TargetStatus", "Version", "get_target", "validate_target"]


def validate_target(spec: ReleaseSpec) -> None:
    """Check the orchestration files a spec names; raises SpecError. Touches no platform."""
    if spec.target.kind == "swarm":
        from tasks.targets.compose import load_service

        load_service(spec.target.stack_file, spec.target.service)
        return
    raise SpecError(f"target.kind: no target of kind {spec.target.kind!r}")


def get_target(spec: ReleaseSpec, auth: RegistryAuth | None = None, client=None) -> Target:
    """Build the Target for a spec's `target.kind`; an unknown kind is an error, not a default."""
    if spec.target.kind == "swarm":
        from tasks.targets.swarm import SwarmTarget

        return SwarmTarget(spec, auth=auth, client=client)
    raise SpecError(f"target.kind: no target of kind {spec.target.kind!r}")
