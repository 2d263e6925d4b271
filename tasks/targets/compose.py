"""The subset of the compose v3 stack-file format that Ferryman applies to a Swarm service.

Ferryman creates and updates services through the Docker API rather than `docker stack
deploy`, so it reads the stack file itself. A key it cannot apply is an error named with its
path, never silently dropped: a service that differs from its file is worse than no service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.durations import Seconds
from tasks.errors import SpecError


class _Compose(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpdateConfig(_Compose):
    """compose `deploy.update_config` / `rollback_config`."""

    parallelism: Annotated[int, Field(ge=0)] = 1
    delay: Seconds = 0.0
    failure_action: Literal["pause", "continue", "rollback"] = "pause"
    monitor: Seconds = 5.0
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    order: Literal["stop-first", "start-first"] = "stop-first"


class RestartPolicy(_Compose):
    """compose `deploy.restart_policy`."""

    condition: Literal["none", "on-failure", "any"] = "any"
    delay: Seconds = 5.0
    max_attempts: Annotated[int, Field(ge=0)] = 0
    window: Seconds = 0.0


class Deploy(_Compose):
    """compose `deploy`: the keys that shape a replicated Swarm service."""

    mode: Literal["replicated"] = "replicated"
    replicas: Annotated[int, Field(ge=1)] = 1
    endpoint_mode: Literal["dnsrr", "vip"] = "dnsrr"
    labels: dict[str, str] = Field(default_factory=dict)
    update_config: UpdateConfig = UpdateConfig()
    rollback_config: UpdateConfig = UpdateConfig()
    restart_policy: RestartPolicy = RestartPolicy()

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_mapping(cls, value: Any) -> Any:
        return _key_values(value)


class Service(_Compose):
    """One service of a stack file. `image` is ignored: Ferryman deploys the built digest."""

    image: str | None = None
    command: list[str] | str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    networks: list[str] = Field(default_factory=list)
    stop_grace_period: Seconds = 10.0
    deploy: Deploy = Deploy()

    @field_validator("environment", "labels", mode="before")
    @classmethod
    def _as_mapping(cls, value: Any) -> Any:
        return _key_values(value)

    @field_validator("networks", mode="before")
    @classmethod
    def _network_names(cls, value: Any) -> Any:
        # compose allows `networks: {name: {aliases: ...}}`; only the names matter here.
        return list(value) if isinstance(value, dict) else value


class Network(_Compose):
    """compose top-level `networks.<name>`: Ferryman attaches only to existing ones."""

    external: bool = False
    name: str | None = None


class StackFile(_Compose):
    """A compose v3 file: `version`, `services`, `networks`."""

    version: str | None = None
    services: dict[str, Service]
    networks: dict[str, Network | None] = Field(default_factory=dict)


def _key_values(value: Any) -> Any:
    """compose accepts `KEY=VALUE` lists as well as mappings; numbers become strings."""
    if isinstance(value, list):
        pairs = {}
        for item in value:
            key, _, val = str(item).partition("=")
            pairs[key] = val
        return pairs
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return value


def load_service(stack_file: Path, service: str) -> tuple[Service, list[str]]:
    """Read `service` from a stack file; return it and the Docker names of its networks.

    Called when a spec is validated and again when it is deployed. Raises SpecError naming
    the file and the key path for anything Ferryman cannot apply.
    """
    try:
        data = yaml.safe_load(stack_file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"{stack_file}: cannot read stack file: {e}") from None
    try:
        stack = StackFile.model_validate(data)
    except ValidationError as e:
        from tasks.spec import format_validation_error

        raise SpecError(
            format_validation_error(e, str(stack_file)).replace("release spec", "stack file")
        ) from None
    if service not in stack.services:
        raise SpecError(
            f"{stack_file}: no service {service!r} (services: {sorted(stack.services)})"
        )
    definition = stack.services[service]
    networks = []
    for name in definition.networks:
        if name not in stack.networks:
            raise SpecError(f"{stack_file}: services.{service}.networks: {name!r} is not declared")
        network = stack.networks[name] or Network()
        if not network.external:
            raise SpecError(
                f"{stack_file}: networks.{name}: must be `external: true` "
                "(Ferryman attaches services to networks that already exist)"
            )
        networks.append(network.name or name)
    return definition, networks
