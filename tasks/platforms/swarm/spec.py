"""The `target: {kind: swarm}` model of the release spec, and what the spec check and the
analysis read from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from tasks.durations import Seconds
from tasks.errors import SpecError
from tasks.fields import DNS_LABEL, SpecModel, existing_path
from tasks.platforms.swarm.compose import load_service


class UpdateConfigSpec(SpecModel):
    """Swarm's update_config; overrides the stack file's `deploy.update_config` key by key."""

    parallelism: Annotated[int, Field(ge=0)] | None = None
    delay: Seconds | None = None
    failure_action: Literal["pause", "continue", "rollback"] | None = None
    monitor: Seconds | None = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    order: Literal["stop-first", "start-first"] | None = None


class SwarmTargetSpec(SpecModel):
    """A Docker Swarm service, created from one service of a compose v3 stack file."""

    kind: Literal["swarm"]
    stack_file: Path
    service: Annotated[str, Field(pattern=DNS_LABEL)]
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    metrics_path: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    docker_host: str | None = None
    deploy_timeout: Annotated[Seconds, Field(gt=0)] = 180.0
    update_config: UpdateConfigSpec | None = None

    @field_validator("stack_file")
    @classmethod
    def _stack_file_exists(cls, value: Path, info: ValidationInfo) -> Path:
        return existing_path(value, info, "stack file", is_dir=False)


def declared_replicas(settings: SwarmTargetSpec) -> int:
    """The stable size the stack file gives (`deploy.replicas`); raises SpecError naming
    `target` for a service it lacks or a key Ferryman cannot apply."""
    try:
        definition = load_service(settings.stack_file, settings.service)
    except SpecError as e:
        raise SpecError(f"target: {e}") from None
    return definition.service.deploy.replicas


def query_variables(settings: SwarmTargetSpec) -> dict[str, str]:
    """What a metric query's `${service}` and `${namespace}` stand for on Swarm."""
    return {"service": settings.service, "namespace": ""}
