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
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.durations import Seconds
from tasks.errors import SpecError
from tasks.tag_policy import TagPolicy
from tasks.windows import UpgradeWindow

QUERY_VARIABLES = frozenset(
    {"app", "version", "previous_version", "service", "namespace", "step"}
)
"""Names a metric query may use as `${name}`; `tasks.analysis.runner` fills them per release."""

_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_REPOSITORY = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _existing(value: Path, info: ValidationInfo, what: str, is_dir: bool) -> Path:
    """Resolve a path from the spec file's folder and check it is there."""
    base = (info.context or {}).get("base_dir")
    if base is not None and not value.is_absolute():
        value = Path(base) / value
    value = value.resolve()
    try:
        found = value.is_dir() if is_dir else value.is_file()
    except OSError as e:  # e.g. a name too long: pathlib re-raises all but "not there"
        raise ValueError(f"{what} {str(value)[:200]!r}: {e.strerror}") from None
    if not found:
        raise ValueError(f"{what} {value} {'is not a directory' if is_dir else 'does not exist'}")
    return value


class ImageSpec(_Spec):
    """What to build: the build context, its Dockerfile and build args."""

    repository: Annotated[str, Field(pattern=_REPOSITORY)]
    context: Path
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = Field(default_factory=dict)

    @field_validator("context")
    @classmethod
    def _context_exists(cls, value: Path, info: ValidationInfo) -> Path:
        return _existing(value, info, "build context", is_dir=True)

    @model_validator(mode="after")
    def _dockerfile_exists(self) -> ImageSpec:
        try:
            found = (self.context / self.dockerfile).is_file()
        except (OSError, ValueError):  # a name too long, a NUL byte
            found = False
        if not found:
            raise ValueError(f"no Dockerfile {self.dockerfile[:200]!r} in {self.context}")
        return self


_HOST = r"^[A-Za-z0-9.-]+(:\d+)?$"
ImageTag = Annotated[str, Field(pattern=_TAG.pattern)]


class _RegistryCommon(_Spec):
    """What every registry kind offers: extra tags, and whether an existing tag may move."""

    extra_tags: list[ImageTag] = Field(default_factory=list)
    """Tags pushed besides the version, e.g. `latest`."""
    allow_tag_overwrite: bool | list[ImageTag] = False
    """Move a tag that already points at another image: `true` for any tag, or a list."""

    def may_overwrite(self, tag: str) -> bool:
        """Whether pushing may move `tag` off the image the registry has under it."""
        if isinstance(self.allow_tag_overwrite, bool):
            return self.allow_tag_overwrite
        return tag in self.allow_tag_overwrite


class GenericRegistrySpec(_RegistryCommon):
    """Any OCI registry with basic auth or none (`tasks/registries/generic.py`)."""

    kind: Literal["generic"] = "generic"
    url: Annotated[str, Field(pattern=_HOST)]
    credentials_block: str | None = None
    """Name of a prefect-docker DockerRegistryCredentials block."""


class DockerHubRegistrySpec(_RegistryCommon):
    """Docker Hub: images are `docker.io/<namespace>/<image.repository>`."""

    kind: Literal["dockerhub"]
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$", max_length=255)]
    credentials_block: str | None = None
    """Name of a prefect-docker DockerRegistryCredentials block (an access token as password)."""
    endpoint: Annotated[str, Field(pattern=_HOST)] | None = None
    """A registry to use instead of Docker Hub, speaking its protocol (tests, a mirror)."""


class EcrRegistrySpec(_RegistryCommon):
    """Amazon ECR, reached with boto3; the registry host comes from the authorization token."""

    kind: Literal["ecr"]
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")] | None = None
    """AWS region; boto3's (AWS_DEFAULT_REGION, ~/.aws/config, the block's) when not given."""
    registry_id: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    """The AWS account whose registry to use; the credentials' own account when not given."""
    aws_credentials_block: str | None = None
    """Name of a prefect-aws AwsCredentials block; boto3's standard chain when not given."""
    create_repository: bool = True
    tag_immutability: bool = False
    """For a repository Ferryman creates: IMMUTABLE tags."""
    scan_on_push: bool = False
    """For a repository Ferryman creates: scan each pushed image."""
    endpoint_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    """The ECR API's address instead of the region's (moto in tests, ECR-compatible services)."""
    registry_host: Annotated[str, Field(pattern=_HOST)] | None = None
    """The registry to push to instead of the token's proxyEndpoint (with `endpoint_url`)."""


REGISTRY_KINDS = ("generic", "dockerhub", "ecr")


def _generic_by_default(value: object) -> object:
    # `kind` was optional before there was more than one kind; keep specs without it valid.
    if isinstance(value, dict) and "kind" not in value:
        return {**value, "kind": "generic"}
    return value


RegistrySpec = Annotated[
    Annotated[
        GenericRegistrySpec | DockerHubRegistrySpec | EcrRegistrySpec,
        Field(discriminator="kind"),
    ],
    BeforeValidator(_generic_by_default),
]
"""Where to push: one model per `registry.kind`; see the README's registry section."""


class UpdateConfigSpec(_Spec):
    """Swarm's update_config; overrides the stack file's `deploy.update_config` key by key."""

    parallelism: Annotated[int, Field(ge=0)] | None = None
    delay: Seconds | None = None
    failure_action: Literal["pause", "continue", "rollback"] | None = None
    monitor: Seconds | None = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
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
        return _existing(value, info, "stack file", is_dir=False)


Bound = Annotated[float, Field(allow_inf_nan=False)]
"""A threshold's end: NaN compares false with everything, so a NaN bound would judge any
value as inside; infinity is what leaving the bound out already says."""


class Threshold(_Spec):
    """The range a measured value must stay in, as Flagger's thresholdRange: min, max or both."""

    min: Bound | None = None
    max: Bound | None = None

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
    window: UpgradeWindow | None = None
    """When releases may start; None: at any time."""
    tag_policy: TagPolicy = TagPolicy()
    """Which new image tags the triggers release."""
    source: Path | None = Field(default=None, exclude=True)
    """The file this spec was loaded from (set by `load_spec`)."""

    @field_validator("registry")
    @classmethod
    def _repository_fits_registry(cls, value: object, info: ValidationInfo) -> object:
        image = info.data.get("image")
        if isinstance(value, DockerHubRegistrySpec) and image and "/" in image.repository:
            raise ValueError(
                f"Docker Hub repositories are <namespace>/<name>: image.repository "
                f"{image.repository!r} must be the name alone (the namespace is "
                f"registry.namespace, {value.namespace!r})"
            )
        return value


def validate_version(version: str) -> str:
    """Return `version` if it is a valid image tag; raise SpecError naming it otherwise."""
    if not _TAG.match(version):
        raise SpecError(
            f"version {version!r} is not a valid image tag "
            "(letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        )
    return version


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def validate_digest(digest: str) -> str:
    """Return `digest` if it is a sha256 image digest; raise SpecError naming it otherwise."""
    if not _DIGEST.fullmatch(digest):
        raise SpecError(f"digest {digest!r} is not an image digest (sha256:<64 hex digits>)")
    return digest


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each naming the field path, e.g. `analysis.metrics[0].query`."""
    lines = [f"{source}: invalid release spec"]
    for problem in error.errors():
        path = ""
        loc = problem["loc"]
        if loc[:1] == ("registry",) and len(loc) > 1 and loc[1] in REGISTRY_KINDS:
            loc = loc[:1] + loc[2:]  # pydantic names the union member; the user wrote no such key
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not _KEY.fullmatch(str(part)):  # a stray key with spaces, dots, newlines...
                path += f"[{str(part)!r}]"
            else:
                path += f".{part}" if path else str(part)
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {path or '(top level)'}: {message}")
    return "\n".join(lines)


def parse_spec(data: object, base_dir: Path, source: str = "<spec>") -> ReleaseSpec:
    """Validate already-parsed YAML; relative paths are taken from `base_dir`."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: invalid release spec\n  (top level): a release spec is a "
                        f"YAML mapping, got {type(data).__name__}")
    try:
        spec = ReleaseSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source)) from None
    # The stack file is part of the spec: a service it lacks or a key Ferryman cannot apply
    # must fail here, not half-way through a deploy.
    from tasks.targets import validate_target

    try:
        validate_target(spec)
    except SpecError as e:
        raise SpecError(f"{source}: invalid release spec\n  target: {e}") from None
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


SPEC_FILES = "*/release.yaml"
"""Where an app's spec lives under the specs folder (`deployments/<app>/release.yaml`)."""


def spec_files(directory: str | Path) -> list[Path]:
    """The release specs under `directory`, sorted."""
    return sorted(Path(directory).glob(SPEC_FILES))


def app_of(file: str | Path) -> str | None:
    """The `app` a spec file names, read without validating the rest; None if unreadable.

    For lookups over many specs (by app name, or the app of another flow run), where one
    broken spec must not hide the others and a full validation each time would be waste.
    """
    try:
        data = yaml.safe_load(Path(file).read_text())
    except (OSError, yaml.YAMLError):
        return None
    app = data.get("app") if isinstance(data, dict) else None
    return app if isinstance(app, str) else None


def find_spec(app: str, directory: str | Path) -> Path:
    """The spec file of `app` under `directory`, for runs started by app name (UI, events).

    Raises SpecError naming the apps there are when none (or several) is `app`.
    """
    found: dict[str, list[Path]] = {}
    for file in spec_files(directory):
        if (name := app_of(file)) is not None:
            found.setdefault(name, []).append(file)
    files = found.get(app, [])
    if len(files) == 1:
        return files[0].resolve()
    if files:
        raise SpecError(f"app {app!r} has several specs: {', '.join(map(str, files))}")
    known = ", ".join(sorted(found)) or "none"
    raise SpecError(f"no release spec for app {app!r} under {directory} (apps there: {known})")
