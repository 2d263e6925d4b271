"""The release spec: one YAML file per app, loaded into one pydantic model.

`load_spec` is called first by every flow and CLI command, so a bad spec fails with the
field path and the reason before anything touches a registry or a cluster.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.durations import Seconds
from tasks.errors import SpecError

QUERY_VARIABLES = frozenset(
    {"app", "version", "previous_version", "service", "namespace", "step"}
)
"""Names a metric query may use as `${name}`; `tasks.analysis.runner` fills them per release."""

_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    return value.resolve()


class ImageSpec(_Spec):
    """What to build: the build context, its Dockerfile and build args."""

    repository: Annotated[str, Field(pattern=_REPOSITORY)]
    context: Path
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = Field(default_factory=dict)

    @field_validator("context")
    @classmethod
    def _context_exists(cls, value: Path, info: ValidationInfo) -> Path:
        value = _resolve(value, info)
        if not value.is_dir():
            raise ValueError(f"build context {value} is not a directory")
        return value

    @model_validator(mode="after")
    def _dockerfile_exists(self) -> ImageSpec:
        if not (self.context / self.dockerfile).is_file():
            raise ValueError(f"no Dockerfile {self.dockerfile!r} in {self.context}")
        return self


class RegistrySpec(_Spec):
    """Where to push. `credentials_block` names a prefect-docker DockerRegistryCredentials block."""

    kind: Literal["generic"] = "generic"
    url: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")]
    credentials_block: str | None = None


class UpdateConfigSpec(_Spec):
    """Swarm's update_config; overrides the stack file's `deploy.update_config` key by key."""

    parallelism: Annotated[int, Field(ge=0)] | None = None
    delay: Seconds | None = None
    failure_action: Literal["pause", "continue", "rollback"] | None = None
    monitor: Seconds | None = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    order: Literal["stop-first", "start-first"] | None = None


class SwarmTargetSpec(_Spec):
    """A Docker Swarm service, created from one service of a compose v3 stack file."""

    kind: Literal["swarm"]
    stack_file: Path
    service: Annotated[str, Field(pattern=_DNS_LABEL)]
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    metrics_path: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    docker_host: str | None = None
    deploy_timeout: Annotated[Seconds, Field(gt=0)] = 180.0
    update_config: UpdateConfigSpec | None = None

    @field_validator("stack_file")
    @classmethod
    def _stack_file_exists(cls, value: Path, info: ValidationInfo) -> Path:
        value = _resolve(value, info)
        if not value.is_file():
            raise ValueError(f"stack file {value} does not exist")
        return value


class Threshold(_Spec):
    """The range a measured value must stay in, as Flagger's thresholdRange: min, max or both."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound_at_least(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class MetricSpec(_Spec):
    """One PromQL query, templated with `${app}`, `${version}`..., judged against a threshold."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    query: Annotated[str, Field(min_length=1)]
    threshold: Threshold

    @field_validator("query")
    @classmethod
    def _known_variables(cls, value: str) -> str:
        template = string.Template(value)
        if not template.is_valid():
            raise ValueError("malformed ${...} placeholder (write $$ for a literal $)")
        unknown = set(template.get_identifiers()) - QUERY_VARIABLES
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; known: {sorted(QUERY_VARIABLES)}"
            )
        return value


class AnalysisSpec(_Spec):
    """How the new version is verified; the limits follow Argo Rollouts' AnalysisTemplate."""

    prometheus: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:9090"
    initial_delay: Seconds = 0.0
    interval: Annotated[Seconds, Field(gt=0)] = 30.0
    count: Annotated[int, Field(ge=1)] = 5
    failure_limit: Annotated[int, Field(ge=0)] = 0
    inconclusive_limit: Annotated[int, Field(ge=0)] = 0
    consecutive_error_limit: Annotated[int, Field(ge=0)] = 4
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    pause_timeout: Annotated[Seconds, Field(gt=0)] = 3600.0
    query_timeout: Annotated[Seconds, Field(gt=0)] = 10.0
    metrics: Annotated[list[MetricSpec], Field(min_length=1)]

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, value: list[MetricSpec]) -> list[MetricSpec]:
        names = [m.name for m in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique; repeated: {duplicates}")
        return value


class ReleaseSpec(_Spec):
    """Everything Ferryman needs to release one app; see the README's spec reference."""

    app: Annotated[str, Field(pattern=_DNS_LABEL)]
    image: ImageSpec
    registry: RegistrySpec
    target: SwarmTargetSpec
    strategy: Literal["rolling"] = "rolling"
    analysis: AnalysisSpec
    source: Path | None = Field(default=None, exclude=True)
    """The file this spec was loaded from (set by `load_spec`)."""


def validate_version(version: str) -> str:
    """Return `version` if it is a valid image tag; raise SpecError naming it otherwise."""
    if not _TAG.match(version):
        raise SpecError(
            f"version {version!r} is not a valid image tag "
            "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        )
    return version


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each naming the field path, e.g. `analysis.metrics[0].query`."""
    lines = [f"{source}: invalid release spec"]
    for problem in error.errors():
        path = ""
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {path or '(top level)'}: {message}")
    return "\n".join(lines)


def parse_spec(data: object, base_dir: Path, source: str = "<spec>") -> ReleaseSpec:
    """Validate already-parsed YAML; relative paths are taken from `base_dir`."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a release spec is a YAML mapping, got {type(data).__name__}")
    try:
        spec = ReleaseSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source)) from None
    # The stack file is part of the spec: a service it lacks or a key Ferryman cannot apply
    # must fail here, not half-way through a deploy.
    from tasks.targets import validate_target

    validate_target(spec)
    return spec


def load_spec(path: str | Path) -> ReleaseSpec:
    """Read and validate a release spec file. Raises SpecError with every problem found."""
    path = Path(path).resolve()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SpecError(f"{path}: cannot read release spec: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    spec = parse_spec(data, path.parent, str(path))
    return spec.model_copy(update={"source": path})
