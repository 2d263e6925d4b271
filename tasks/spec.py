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
    Discriminator,
    Field,
    Tag,
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


_K8S_NAME = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
"""A DNS subdomain, as Kubernetes names Deployments."""


class KubernetesTargetSpec(_Spec):
    """A Kubernetes Deployment behind a Service, reached with the official client.

    How to connect: `kubeconfig` (a file), `in_cluster` (the pod's ServiceAccount) or
    `cluster_config_block` (prefect-kubernetes' KubernetesClusterConfig); at most one, and
    none means the kubeconfig kubectl would use (KUBECONFIG, ~/.kube/config).
    `deployment` and `service` default to the app's name.
    """

    kind: Literal["kubernetes"]
    kubeconfig: Path | None = None
    """Resolved from the spec's folder; read when Ferryman connects, not when the spec is
    loaded (the file is a credential a worker may only get at run time)."""
    in_cluster: bool = False
    cluster_config_block: str | None = None
    context: str | None = None
    """The kubeconfig's context (the block's `context_name`, else the current context)."""
    namespace: Annotated[str, Field(pattern=_DNS_LABEL)] | None = None
    """Default: the context's namespace (in a cluster, the pod's own), else `default`."""
    deployment: Annotated[str, Field(pattern=_K8S_NAME)]
    service: Annotated[str, Field(pattern=_DNS_LABEL)]
    container: Annotated[str, Field(pattern=_DNS_LABEL)] | None = None
    """The container whose image is released; default: the pod's first."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    metrics_path: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    manifests: Path | None = None
    """A folder of YAML manifests (`deployments/<app>/k8s/`), applied with server-side apply
    when the app's Deployment does not exist yet."""
    deploy_timeout: Annotated[Seconds, Field(gt=0)] = 180.0

    @field_validator("kubeconfig")
    @classmethod
    def _from_the_specs_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is not None and base is not None and not value.is_absolute():
            value = Path(base) / value
        return value.resolve() if value is not None else None

    @field_validator("manifests")
    @classmethod
    def _manifests_exist(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _existing(value, info, "manifests folder",
                                                     is_dir=True)

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> KubernetesTargetSpec:
        given = [name for name, on in (("kubeconfig", self.kubeconfig is not None),
                                       ("in_cluster", self.in_cluster),
                                       ("cluster_config_block",
                                        self.cluster_config_block is not None)) if on]
        if len(given) > 1:
            raise ValueError(f"give one way to reach the cluster, not {' and '.join(given)}")
        return self


TARGET_KINDS = ("swarm", "kubernetes")


def _kubernetes_names(value: object) -> object:
    """`deployment` defaults to the app's name and `service` to the deployment's."""
    if not isinstance(value, dict) or not isinstance(value.get("target"), dict):
        return value
    target = value["target"]
    if target.get("kind") != "kubernetes":
        return value
    deployment = target.get("deployment", value.get("app"))
    target = {**target, "deployment": deployment, "service": target.get("service", deployment)}
    return {**value, "target": {k: v for k, v in target.items() if v is not None}}


TargetSpec = Annotated[SwarmTargetSpec | KubernetesTargetSpec, Field(discriminator="kind")]
"""Where the app runs: one model per `target.kind`."""


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


class RollingStrategy(_Spec):
    """The platform's own rolling update, judged from the first new replica on."""

    kind: Literal["rolling"] = "rolling"


class BlueGreenStrategy(_Spec):
    """The new version beside the old on a preview address; then the app's address switches."""

    kind: Literal["blue-green"] = "blue-green"
    preview_analysis: bool = True
    """Judge the preview (only the preview address's traffic reaches it) before the switch."""
    post_switch_analysis: bool = True
    """Judge it again once it serves the app's address; a failure switches straight back."""
    approve_switch: bool = False
    """Wait for a person's approval before the switch (after the preview analysis)."""
    scale_down_delay: Annotated[Seconds, Field(ge=0)] = 30.0
    """How long after the switch the old version stays ready for a switch back."""

    @model_validator(mode="after")
    def _judged_somewhere(self) -> BlueGreenStrategy:
        if not (self.preview_analysis or self.post_switch_analysis):
            raise ValueError(
                "set preview_analysis or post_switch_analysis: a version nobody measured "
                "is never promoted"
            )
        return self


class AnalysisOverride(_Spec):
    """A canary analysis step's changes to the spec's `analysis` (count, interval, delay)."""

    count: Annotated[int, Field(ge=1)] | None = None
    interval: Annotated[Seconds, Field(gt=0)] | None = None
    initial_delay: Seconds | None = None


class Approval(_Spec):
    """How long a person has to answer, and what happens when nobody does."""

    timeout: Annotated[Seconds, Field(gt=0)] | None = None
    """Default: `analysis.pause_timeout`."""
    on_timeout: Literal["rollback", "promote"] = "rollback"


class Pause(_Spec):
    """Hold the current weight for a while (bake time) before the next step."""

    duration: Annotated[Seconds, Field(gt=0)]


class WeightStep(_Spec):
    weight: int
    """Percent of the app's traffic on the new version."""

    @field_validator("weight")
    @classmethod
    def _a_share(cls, value: int) -> int:
        if value >= 100:
            raise ValueError("at most 99: all traffic (100) is the promotion after the last step")
        if value < 1:
            raise ValueError("at least 1 (percent of the app's traffic)")
        return value


class AnalysisStep(_Spec):
    analysis: AnalysisOverride = AnalysisOverride()


class ApproveStep(_Spec):
    approve: Approval = Approval()


class PauseStep(_Spec):
    pause: Pause


def _step_kind(value: object) -> str | None:
    if isinstance(value, dict):
        keys = [k for k in ("weight", "analysis", "approve", "pause") if k in value]
        return keys[0] if len(keys) == 1 else None
    if isinstance(value, _Spec):
        return {WeightStep: "weight", AnalysisStep: "analysis", ApproveStep: "approve",
                PauseStep: "pause"}.get(type(value))
    return None


def _empty_settings(value: object) -> object:
    # `- analysis:` and `- approve:` with nothing after them read as None in YAML.
    if isinstance(value, dict):
        return {k: ({} if v is None and k in ("analysis", "approve") else v)
                for k, v in value.items()}
    return value


CanaryStep = Annotated[
    Annotated[WeightStep, Tag("weight")] | Annotated[AnalysisStep, Tag("analysis")]
    | Annotated[ApproveStep, Tag("approve")] | Annotated[PauseStep, Tag("pause")],
    Discriminator(
        _step_kind,
        custom_error_type="canary_step",
        custom_error_message="a step is one of `weight: N`, `analysis: {...}`, "
        "`approve: {...}` or `pause: {duration: ...}`",
    ),
    BeforeValidator(_empty_settings),
]


class CanaryStrategy(_Spec):
    """A share of the app's traffic on the new version, raised in steps, judged at each."""

    kind: Literal["canary"] = "canary"
    steps: Annotated[list[CanaryStep], Field(min_length=1)] = Field(
        default_factory=lambda: [
            WeightStep(weight=25), AnalysisStep(), WeightStep(weight=50), AnalysisStep(),
        ]
    )

    @field_validator("steps")
    @classmethod
    def _judged_with_traffic(cls, steps: list) -> list:
        weighted = False
        for i, step in enumerate(steps):
            if isinstance(step, WeightStep):
                weighted = True
            elif isinstance(step, AnalysisStep) and not weighted:
                raise ValueError(
                    f"step {i} is an analysis before any weight: the canary would have "
                    "no traffic to judge"
                )
        if not any(isinstance(step, AnalysisStep) for step in steps):
            raise ValueError("no analysis step: a version nobody measured is never promoted")
        return steps

    def weights(self) -> list[int]:
        return [step.weight for step in self.steps if isinstance(step, WeightStep)]


STRATEGY_KINDS = ("rolling", "blue-green", "canary")
STRATEGIES: dict[str, type[_Spec]] = {
    "rolling": RollingStrategy, "blue-green": BlueGreenStrategy, "canary": CanaryStrategy,
}


def _strategy_by_kind(value: object) -> object:
    # The short form `strategy: rolling` names the kind with its defaults.
    return {"kind": value} if isinstance(value, str) else value


StrategySpec = Annotated[
    Annotated[RollingStrategy | BlueGreenStrategy | CanaryStrategy, Field(discriminator="kind")],
    BeforeValidator(_strategy_by_kind),
]
"""How the new version reaches users: one model per `strategy.kind`."""


class ReleaseSpec(_Spec):
    """Everything Ferryman needs to release one app; see the README's spec reference."""

    app: Annotated[str, Field(pattern=_DNS_LABEL)]
    image: ImageSpec
    registry: RegistrySpec
    target: TargetSpec
    strategy: StrategySpec = RollingStrategy()
    analysis: AnalysisSpec
    window: UpgradeWindow | None = None
    """When releases may start; None: at any time."""
    tag_policy: TagPolicy = TagPolicy()
    """Which new image tags the triggers release."""
    source: Path | None = Field(default=None, exclude=True)
    """The file this spec was loaded from (set by `load_spec`)."""

    @model_validator(mode="before")
    @classmethod
    def _default_kubernetes_names(cls, value: object) -> object:
        return _kubernetes_names(value)

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


def with_strategy(spec: ReleaseSpec, kind: str) -> ReleaseSpec:
    """The spec with another strategy kind (`--strategy`, the UI's choice): the spec's own
    settings when it names that kind already, else that kind's defaults. Checked like the
    spec itself; raises SpecError naming `strategy`."""
    if kind not in STRATEGIES:
        raise SpecError(f"strategy {kind!r}: choose one of {', '.join(STRATEGY_KINDS)}")
    if spec.strategy.kind == kind:
        return spec
    changed = spec.model_copy(update={"strategy": STRATEGIES[kind]()})
    from tasks.targets import validate_target

    try:
        validate_target(changed)
    except SpecError as e:
        raise SpecError(f"strategy {kind} with its defaults: {e}") from None
    return changed


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


_UNION_TAGS = {("registry",): REGISTRY_KINDS, ("strategy",): STRATEGY_KINDS,
               ("target",): TARGET_KINDS,
               ("strategy", "steps", int): ("weight", "analysis", "approve", "pause")}


def _without_union_tags(loc: tuple) -> tuple:
    """pydantic names the member of a tagged union in an error's path (`registry.ecr.region`);
    the user wrote no such key, so the path drops it (`registry.region`)."""
    out: list = []
    dropped = False
    for part in loc:
        shape = tuple(int if isinstance(p, int) else p for p in out)
        if not dropped and part in _UNION_TAGS.get(shape, ()):
            dropped = True  # a tag can equal the field after it: `steps[0].weight.weight`
            continue
        dropped = False
        out.append(part)
    return tuple(out)


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each naming the field path, e.g. `analysis.metrics[0].query`."""
    lines = [f"{source}: invalid release spec"]
    for problem in error.errors():
        path = ""
        loc = problem["loc"]
        loc = _without_union_tags(loc)
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not _KEY.fullmatch(str(part)):  # a stray key with spaces, dots, newlines...
                path += f"[{str(part)!r}]"
            else:
                path += f".{part}" if path else str(part)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "union_tag_invalid":  # `kind: nomad`: name the key and choices
            ctx = problem["ctx"]
            path = f"{path}.{ctx['discriminator'].strip(chr(39))}" if path else path
            message = f"{ctx['tag']!r} is not one of {ctx['expected_tags']}"
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
        raise SpecError(f"{source}: invalid release spec\n  {e}") from None
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
