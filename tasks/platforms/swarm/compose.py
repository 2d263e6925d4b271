"""The subset of the compose v3 stack-file format that Ferryman applies to a Swarm service.

Ferryman creates and updates services through the Docker API rather than `docker stack
deploy`, so it reads the stack file itself. A key it cannot apply is an error named with its
path, never silently dropped: a service that differs from its file is worse than no service.
Every release applies the whole service definition (environment, command, health check,
secrets, limits...), so an edit to the file arrives with the next release, and a rollback
puts the definition of the restored version back with its image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.durations import Seconds
from tasks.errors import SpecError
from tasks.fields import format_validation_error


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


_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)


def parse_bytes(value: object) -> int:
    """compose sizes: `128M`, `1.5g`, `512k`, or a plain number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _BYTES.match(str(value).strip())
    if match is None:
        raise ValueError(f"not a size: {value!r} (e.g. 128M, 1G)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))


class Resources(_Compose):
    """compose `deploy.resources.limits` / `reservations`."""

    cpus: Annotated[float, Field(gt=0)] | None = None
    memory: int | None = None

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus_as_number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, str) else value

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_in_bytes(cls, value: Any) -> Any:
        return None if value is None else parse_bytes(value)


class ResourceSettings(_Compose):
    limits: Resources = Resources()
    reservations: Resources = Resources()


class Deploy(_Compose):
    """compose `deploy`: the keys that shape a replicated Swarm service."""

    mode: Literal["replicated"] = "replicated"
    replicas: Annotated[int, Field(ge=1)] = 1
    endpoint_mode: Literal["dnsrr", "vip"] = "dnsrr"
    labels: dict[str, str] = Field(default_factory=dict)
    update_config: UpdateConfig = UpdateConfig()
    rollback_config: UpdateConfig = UpdateConfig()
    restart_policy: RestartPolicy = RestartPolicy()
    resources: ResourceSettings = ResourceSettings()

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_mapping(cls, value: Any) -> Any:
        return _key_values(value)


class Healthcheck(_Compose):
    """compose `healthcheck`: Swarm counts a task as running only once it is healthy."""

    test: list[str] | str | None = None
    interval: Seconds | None = None
    timeout: Seconds | None = None
    retries: Annotated[int, Field(ge=0)] | None = None
    start_period: Seconds | None = None
    disable: bool = False

    @field_validator("test", mode="before")
    @classmethod
    def _shell_form(cls, value: Any) -> Any:
        # A string runs through the image's shell: ["CMD-SHELL", "..."]; images FROM scratch
        # have none, so most will use the list form ["CMD", "/app", "-check"].
        return ["CMD-SHELL", value] if isinstance(value, str) else value


class FileReference(_Compose):
    """A service's `secrets:` / `configs:` entry, long form (a bare name is the short form)."""

    source: str
    target: str | None = None
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444


class Mount(_Compose):
    """A service's `volumes:` entry, long form (`src:dst[:ro]` is the short form)."""

    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: str | None = None
    target: str
    read_only: bool = False


class Port(_Compose):
    """A service's `ports:` entry, long form. Only `mode: host` works with dnsrr."""

    target: Annotated[int, Field(ge=1, le=65535)]
    published: Annotated[int, Field(ge=1, le=65535)] | None = None
    protocol: Literal["tcp", "udp"] = "tcp"
    mode: Literal["host", "ingress"] = "ingress"


class Service(_Compose):
    """One service of a stack file. `image` is ignored: Ferryman deploys the built digest."""

    image: str | None = None
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    networks: list[str] = Field(default_factory=list)
    stop_grace_period: Seconds = 10.0
    healthcheck: Healthcheck | None = None
    secrets: list[FileReference] = Field(default_factory=list)
    configs: list[FileReference] = Field(default_factory=list)
    volumes: list[Mount] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    user: str | None = None
    working_dir: str | None = None
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

    @field_validator("secrets", "configs", mode="before")
    @classmethod
    def _file_references(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"source": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("volumes", mode="before")
    @classmethod
    def _mounts(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_short_mount(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_short_port(v) if isinstance(v, str | int) else v for v in value]
        return value


def _short_mount(text: str) -> dict:
    """`name:/path`, `/host:/path:ro`: a path source is a bind mount, a name a volume."""
    parts = text.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f"volume {text!r}: want SOURCE:TARGET[:ro]")
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith(("/", ".")) else "volume"
    return {"type": kind, "source": source, "target": target,
            "read_only": len(parts) == 3 and parts[2] == "ro"}


def _short_port(text: str | int) -> dict:
    """`8080`, `80:8080`, `80:8080/udp`; the short form publishes through the routing mesh."""
    ports, _, protocol = str(text).partition("/")
    published, _, target = ports.rpartition(":")
    try:
        return {"target": int(target), "published": int(published) if published else None,
                "protocol": protocol or "tcp", "mode": "ingress"}
    except ValueError:
        raise ValueError(f"port {text!r}: want [PUBLISHED:]TARGET[/PROTOCOL]") from None


class External(_Compose):
    """compose top-level `networks`/`secrets`/`configs` entries: Ferryman attaches to and
    references only objects that already exist in the swarm."""

    external: bool = False
    name: str | None = None


class VolumeDeclaration(_Compose):
    """compose top-level `volumes.<name>`; the node's local driver creates it."""

    external: bool = False
    name: str | None = None
    driver: str | None = None


class StackFile(_Compose):
    """A compose v3 file: `version`, `services`, `networks`, `secrets`, `configs`, `volumes`."""

    version: str | None = None
    services: dict[str, Service]
    networks: dict[str, External | None] = Field(default_factory=dict)
    secrets: dict[str, External | None] = Field(default_factory=dict)
    configs: dict[str, External | None] = Field(default_factory=dict)
    volumes: dict[str, VolumeDeclaration | None] = Field(default_factory=dict)


@dataclass(frozen=True)
class Definition:
    """A service as the stack file defines it, with every name resolved to the swarm's."""

    service: Service
    networks: tuple[str, ...]
    """Docker names of the networks it attaches to."""
    secrets: tuple[tuple[str, FileReference], ...] = ()
    """(Docker name, reference) of each secret; the file name defaults to the key's."""
    configs: tuple[tuple[str, FileReference], ...] = ()
    volumes: tuple[tuple[str | None, Mount], ...] = ()
    """(Docker volume name or bind path, mount)."""


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


def _external(
    stack_file: Path, kind: str, declared: dict[str, External | None], name: str, where: str
) -> str:
    """The swarm's name of a network/secret/config the service names; it must be external."""
    if name not in declared:
        raise SpecError(f"{stack_file}: {where}: {name!r} is not declared under `{kind}:`")
    entry = declared[name] or External()
    if not entry.external:
        raise SpecError(
            f"{stack_file}: {kind}.{name}: must be `external: true` "
            f"(Ferryman uses {kind} that already exist in the swarm)"
        )
    return entry.name or name


def load_service(stack_file: Path, service: str) -> Definition:
    """Read `service` from a stack file, with the swarm names of what it refers to.

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
        raise SpecError(format_validation_error(e, str(stack_file), "stack file")) from None
    if service not in stack.services:
        raise SpecError(
            f"{stack_file}: no service {service!r} (services: {sorted(stack.services)})"
        )
    d = stack.services[service]
    at = f"services.{service}"
    for i, port in enumerate(d.ports):
        if d.deploy.endpoint_mode == "dnsrr" and port.mode != "host":
            raise SpecError(
                f"{stack_file}: {at}.ports[{i}]: endpoint_mode dnsrr publishes only with "
                "`mode: host` (the long form); the routing mesh needs a virtual IP"
            )
    volumes = []
    for i, mount in enumerate(d.volumes):
        source = mount.source
        if mount.type == "volume" and source is not None:
            if source not in stack.volumes:
                raise SpecError(f"{stack_file}: {at}.volumes[{i}]: volume {source!r} is not "
                                "declared under `volumes:`")
            declared = stack.volumes[source] or VolumeDeclaration()
            source = declared.name or source
        volumes.append((source, mount))
    return Definition(
        service=d,
        networks=tuple(_external(stack_file, "networks", stack.networks, n, f"{at}.networks")
                       for n in d.networks),
        secrets=tuple((_external(stack_file, "secrets", stack.secrets, r.source,
                                 f"{at}.secrets"), r) for r in d.secrets),
        configs=tuple((_external(stack_file, "configs", stack.configs, r.source,
                                 f"{at}.configs"), r) for r in d.configs),
        volumes=tuple(volumes),
    )
