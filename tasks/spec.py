"""The release spec: one YAML file per app, loaded into one pydantic model.

`load_spec` is called first by every flow and CLI command, so a bad spec fails with the
field path and the reason before anything touches a registry or a cluster.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.analysis.prometheus import PrometheusSpec
from tasks.analysis.providers import PROVIDERS, ProviderSpec
from tasks.analysis.variables import QUERY_VARIABLES
from tasks.durations import Seconds
from tasks.errors import SpecError
from tasks.fields import (
    DNS_LABEL,
    REPOSITORY,
    TAG,
    SpecModel,
    existing_path,
    format_validation_error,
)
from tasks.platforms import PLATFORMS
from tasks.registries.specs import REGISTRY_KINDS, DockerHubRegistrySpec, RegistrySpec
from tasks.routers.replicas import check_weights
from tasks.strategy_kinds import STRATEGY_KINDS
from tasks.tag_policy import TagPolicy
from tasks.windows import UpgradeWindow


class ImageSpec(SpecModel):
    """What to build: the build context, its Dockerfile and build args."""

    repository: Annotated[str, Field(pattern=REPOSITORY)]
    context: Path
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = Field(default_factory=dict)

    @field_validator("context")
    @classmethod
    def _context_exists(cls, value: Path, info: ValidationInfo) -> Path:
        return existing_path(value, info, "build context", is_dir=True)

    @model_validator(mode="after")
    def _dockerfile_exists(self) -> ImageSpec:
        try:
            found = (self.context / self.dockerfile).is_file()
        except (OSError, ValueError):  # a name too long, a NUL byte
            found = False
        if not found:
            raise ValueError(f"no Dockerfile {self.dockerfile[:200]!r} in {self.context}")
        return self






Bound = Annotated[float, Field(allow_inf_nan=False)]
"""A threshold's end: NaN compares false with everything, so a NaN bound would judge any
value as inside; infinity is what leaving the bound out already says."""


class Threshold(SpecModel):
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


class MetricSpec(SpecModel):
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


class AnalysisSpec(SpecModel):
    """How the new version is verified; the limits follow Argo Rollouts' AnalysisTemplate."""

    provider: ProviderSpec = PrometheusSpec()
    """Where the measurements come from, by `kind` (`prometheus`, the only one today)."""
    initial_delay: Seconds = 0.0
    interval: Annotated[Seconds, Field(gt=0)] = 30.0
    count: Annotated[int, Field(ge=1)] = 5
    failure_limit: Annotated[int, Field(ge=0)] = 0
    inconclusive_limit: Annotated[int, Field(ge=0)] = 0
    consecutive_error_limit: Annotated[int, Field(ge=0)] = 4
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    pause_timeout: Annotated[Seconds, Field(gt=0)] = 3600.0
    metrics: Annotated[list[MetricSpec], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _prometheus_keys_of_old(cls, value: object) -> object:
        """Specs from before `provider:` named Prometheus' address and time-out beside the
        metrics (`prometheus:`, `query_timeout:`); they still load, as that provider's."""
        if not isinstance(value, dict) or not {"prometheus", "query_timeout"} & set(value):
            return value
        if "provider" in value:
            raise ValueError("give Prometheus' address and time-out under `provider:` "
                             "(address, query_timeout), not beside it")
        old = {"prometheus": "address", "query_timeout": "query_timeout"}
        provider = {"kind": "prometheus"} | {new: value[key] for key, new in old.items()
                                             if key in value}
        return {k: v for k, v in value.items() if k not in old} | {"provider": provider}

    @field_validator("metrics")
    @classmethod
    def _unique_names(cls, value: list[MetricSpec]) -> list[MetricSpec]:
        names = [m.name for m in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique; repeated: {duplicates}")
        return value


class RollingStrategy(SpecModel):
    """The platform's own rolling update, judged from the first new replica on."""

    kind: Literal["rolling"] = "rolling"


class BlueGreenStrategy(SpecModel):
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


class AnalysisOverride(SpecModel):
    """A canary analysis step's changes to the spec's `analysis` (count, interval, delay)."""

    count: Annotated[int, Field(ge=1)] | None = None
    interval: Annotated[Seconds, Field(gt=0)] | None = None
    initial_delay: Seconds | None = None


class Approval(SpecModel):
    """How long a person has to answer, and what happens when nobody does."""

    timeout: Annotated[Seconds, Field(gt=0)] | None = None
    """Default: `analysis.pause_timeout`."""
    on_timeout: Literal["rollback", "promote"] = "rollback"


class Pause(SpecModel):
    """Hold the current weight for a while (bake time) before the next step."""

    duration: Annotated[Seconds, Field(gt=0)]


class WeightStep(SpecModel):
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


class AnalysisStep(SpecModel):
    analysis: AnalysisOverride = AnalysisOverride()


class ApproveStep(SpecModel):
    approve: Approval = Approval()


class PauseStep(SpecModel):
    pause: Pause


def _step_kind(value: object) -> str | None:
    if isinstance(value, dict):
        keys = [k for k in ("weight", "analysis", "approve", "pause") if k in value]
        return keys[0] if len(keys) == 1 else None
    if isinstance(value, SpecModel):
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


class CanaryStrategy(SpecModel):
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


STRATEGIES: dict[str, type[SpecModel]] = {
    "rolling": RollingStrategy, "blue-green": BlueGreenStrategy, "canary": CanaryStrategy,
}
"""The strategies' models by `strategy.kind`, in the order of `STRATEGY_KINDS`."""


def _strategy_by_kind(value: object) -> object:
    # The short form `strategy: rolling` names the kind with its defaults.
    return {"kind": value} if isinstance(value, str) else value


StrategySpec = Annotated[
    Annotated[Union[tuple(STRATEGIES.values())], Field(discriminator="kind")],  # noqa: UP007
    BeforeValidator(_strategy_by_kind),
]
"""How the new version reaches users: one model per `strategy.kind`."""

TARGET_KINDS = tuple(PLATFORMS)
TargetSpec = Annotated[
    Union[tuple(p.spec for p in PLATFORMS.values())],  # noqa: UP007 (built from the table)
    Field(discriminator="kind"),
]
"""Where the app runs: one model per `target.kind`, from the platforms' table."""


class RouterSpec(SpecModel):
    """Who decides which workload answers on the app's address."""

    kind: str | None = None
    """One of the target platform's routers (`replicas` on Swarm and on Kubernetes: shares
    set by replica counts behind the app's address); the platform's default when absent."""


class ReleaseSpec(SpecModel):
    """Everything Ferryman needs to release one app; see the README's spec reference."""

    app: Annotated[str, Field(pattern=DNS_LABEL)]
    image: ImageSpec
    registry: RegistrySpec
    target: TargetSpec
    router: RouterSpec = RouterSpec()
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
    def _platform_defaults(cls, value: object) -> object:
        """The `target:` keys its platform takes from the app's name (Kubernetes'
        `deployment` and `service`)."""
        if not isinstance(value, dict) or not isinstance(value.get("target"), dict):
            return value
        kind = value["target"].get("kind")
        platform = PLATFORMS.get(kind) if isinstance(kind, str) else None
        if platform is None or not isinstance(value.get("app"), str):
            return value
        return {**value, "target": platform.with_defaults(value["target"], value["app"])}

    @field_validator("router")
    @classmethod
    def _router_of_the_platform(cls, value: RouterSpec, info: ValidationInfo) -> RouterSpec:
        target = info.data.get("target")
        if target is None:
            return value  # the target's own error says what is wrong
        routers = PLATFORMS[target.kind].routers
        if value.kind is not None and value.kind not in routers:
            raise ValueError(f"no router {value.kind!r} on {target.kind} (known: "
                             f"{', '.join(routers)})")
        return value

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
    try:
        check_target(changed)
    except SpecError as e:
        raise SpecError(f"strategy {kind} with its defaults: {e}") from None
    return changed


def check_target(spec: ReleaseSpec) -> None:
    """Check the orchestration files a spec names, and that the platform can give the
    strategy's traffic shares; raises SpecError. Touches no platform."""
    replicas = PLATFORMS[spec.target.kind].declared_replicas(spec.target)
    if replicas is not None and isinstance(spec.strategy, CanaryStrategy):
        check_weights(spec.strategy.weights(), replicas, "strategy.steps")


def validate_version(version: str) -> str:
    """Return `version` if it is a valid image tag; raise SpecError naming it otherwise."""
    if not TAG.match(version):
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
               ("analysis", "provider"): tuple(PROVIDERS),
               ("target",): TARGET_KINDS,
               ("strategy", "steps", int): ("weight", "analysis", "approve", "pause")}
"""Where the spec has tagged unions, by the shape of the path, and the tags pydantic names."""


def parse_spec(data: object, base_dir: Path, source: str = "<spec>") -> ReleaseSpec:
    """Validate already-parsed YAML; relative paths are taken from `base_dir`."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: invalid release spec\n  (top level): a release spec is a "
                        f"YAML mapping, got {type(data).__name__}")
    try:
        spec = ReleaseSpec.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise SpecError(format_validation_error(e, source, union_tags=_UNION_TAGS)) from None
    # The stack file is part of the spec: a service it lacks or a key Ferryman cannot apply
    # must fail here, not half-way through a deploy.
    try:
        check_target(spec)
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
