"""The release steps as Prefect tasks: thin wrappers that add retries, names and logging.

Each task takes the typed spec and an injected client or target and returns a typed value,
so tests call them with `.fn(...)`. Only transient errors are retried (`retry_transient`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger

from tasks.analysis.base import MetricProvider
from tasks.analysis.measurement import Measurement, Phase
from tasks.analysis.providers import provider_for
from tasks.analysis.runner import AnalysisResult, Watch, run_analysis
from tasks.analysis.variables import query_variables
from tasks.errors import retry_transient
from tasks.images import (
    BuiltImage,
    PushedImage,
    build_image,
    docker_client,
    locate_image,
    push_image,
)
from tasks.registries import RegistryAuth, get_registry
from tasks.routers import Router
from tasks.spec import AnalysisOverride, ReleaseSpec
from tasks.targets import InFlight, Role, Target, TargetStatus, Version


def in_a_run() -> bool:
    """Whether Prefect runs us (a flow or task run), or a test calls a step's `.fn`."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside Prefect; Ferryman's own logger when a test calls `.fn`."""
    return get_run_logger() if in_a_run() else logging.getLogger("ferryman")


@dataclass(frozen=True)
class Clock:
    """Time as the analysis sees it; tests give a fake one that never really sleeps."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class ProgressBar:
    """The progress artifact of an analysis in the Prefect UI (nothing outside a run)."""

    def __init__(self, spec: ReleaseSpec, version: Version, step: str) -> None:
        self.id = None
        if in_a_run():
            self.id = create_progress_artifact(
                progress=0.0, key=f"{spec.app}-analysis-progress",
                description=f"analysis of {spec.app} {version.version} {step}".strip(),
            )

    def update(self, percent: float) -> None:
        if self.id is not None:
            update_progress_artifact(self.id, progress=percent)


RETRIED = {
    "retries": 3,
    "retry_delay_seconds": [2, 5, 15],
    "retry_condition_fn": retry_transient,
    "cache_policy": NONE,
}


@task(name="package", task_run_name="package {version}", **RETRIED)
def package(
    spec: ReleaseSpec, version: str, build_args: dict[str, str], client=None
) -> BuiltImage:
    """Build the app's image. Returns the built image; raises BuildError with the log tail."""
    log = run_logger()
    log.info("building %s %s from %s", spec.app, version, spec.image.context)
    built = build_image(
        spec, version, build_args, client or docker_client(), log=lambda line: log.debug(line)
    )
    log.info("built %s (%s)", built.reference, built.image_id)
    return built


@task(name="push", task_run_name="push {built.tag}", **RETRIED)
def push(
    spec: ReleaseSpec, built: BuiltImage, auth: RegistryAuth | None, client=None
) -> PushedImage:
    """Push the image to the spec's registry. Returns it pinned by digest."""
    log = run_logger()
    registry = get_registry(spec.registry)
    log.info("pushing %s to %s", built.reference, registry.name)
    return push_image(built, registry, auth, client or docker_client(), log=log.info)


@task(name="locate", task_run_name="locate {version}", **RETRIED)
def locate(
    spec: ReleaseSpec, version: str, digest: str | None, auth: RegistryAuth | None
) -> PushedImage:
    """Find a pushed image in the spec's registry (triggered releases build nothing).

    Returns it pinned by digest; raises ImageNotFoundError when the registry lacks it.
    """
    log = run_logger()
    return locate_image(
        get_registry(spec.registry), auth, spec.image.repository, version, digest, log=log.info
    )


@task(name="read status", **RETRIED)
def read_status(target: Target) -> TargetStatus:
    """What the target runs now and what it records as stable and previous."""
    status = target.status()
    extra = [f"{w.role.value} {w.version.version if w.version else '?'} {w.ready}/{w.desired}"
             for w in status.workloads if w.role is not Role.STABLE]
    run_logger().info(
        "running: %s; stable: %s; %d/%d replicas%s",
        status.current.version if status.current else "nothing",
        status.stable.version if status.stable else "none recorded",
        status.running_replicas,
        status.desired_replicas,
        f"; beside it: {', '.join(extra)}" if extra else "",
    )
    return status


@task(name="mark", task_run_name="mark the release of {in_flight.version}", **RETRIED)
def mark(target: Target, in_flight: InFlight, restore_point: Version | None) -> None:
    """Record on the stable workload that a release is under way, and what it restores."""
    target.mark(in_flight, restore_point)


@task(name="deploy", task_run_name="deploy {version.version} as {role.value}", **RETRIED)
def deploy(
    target: Target, role: Role, version: Version, replicas: int, wait: bool = True
) -> None:
    """Run `version` in the role's workload; raises DeployFailed when it cannot run."""
    target.run(role, version, replicas, progress=run_logger().info, wait=wait)


@task(name="wait", task_run_name="wait for {version.version} as {role.value}", **RETRIED)
def wait(target: Target, role: Role, version: Version, ready: int = 0) -> None:
    """Wait until `ready` replicas (0: all) of the role serve `version`."""
    target.wait(role, version, progress=run_logger().info, ready=ready)


@task(name="set weight", task_run_name="canary at {weight}%", **RETRIED)
def set_weight(router: Router, weight: int) -> float:
    """Give the canary `weight` percent of the app's traffic; returns the share it got."""
    return router.set_weight(weight, progress=run_logger().info)


@task(name="switch", task_run_name="switch the app's address to {to.value}", **RETRIED)
def switch(router: Router, to: Role) -> None:
    """Lead the app's address to the role's workload alone."""
    router.switch(to, progress=run_logger().info)


@task(name="prepare", task_run_name="give the {role.value} its address", **RETRIED)
def prepare(router: Router, role: Role) -> None:
    """Give a new workload the address it is tried on before users get it (a preview's)."""
    router.prepare(role, progress=run_logger().info)


@task(name="retire", task_run_name="retire the {role.value}", **RETRIED)
def retire(target: Target, router: Router, role: Role) -> None:
    """Take a role's routes away, then its workload (a canary, a preview)."""
    router.clean_up(role, progress=run_logger().info)
    target.remove(role, progress=run_logger().info)


@task(name="promote", task_run_name="promote {new.version}", **RETRIED)
def promote(target: Target, new: Version) -> None:
    """Mark `new` as the stable version on the target and clear the release's mark."""
    target.unmark(stable=new)
    run_logger().info("%s is now the stable version", new.version)


@task(name="unmark", task_run_name="clear the release's mark", **RETRIED)
def unmark(target: Target) -> None:
    """Clear the release's mark: the app is back on a judged version (or reported not)."""
    target.unmark(stable=None)


@task(name="verify", task_run_name="verify {version.version} {step}", cache_policy=NONE)
def verify(
    spec: ReleaseSpec,
    version: Version,
    previous: Version | None,
    provider: MetricProvider | None = None,
    step: str = "",
    override: AnalysisOverride | None = None,
    watch: Watch | None = None,
    clock: Clock | None = None,
) -> AnalysisResult:
    """Run the spec's analysis (with a step's `override`) on `version`; returns the decision
    and every measurement. `watch` may stop it between rounds (background analysis).

    Prometheus failures are `error` measurements, not exceptions, so this task never retries.
    """
    log = run_logger()
    analysis = spec.analysis
    if override is not None:
        analysis = analysis.model_copy(update=override.model_dump(exclude_none=True))
    provider = provider or provider_for(analysis.provider)
    clock = clock or Clock()
    total = analysis.count * len(analysis.metrics)
    progress = ProgressBar(spec, version, step)
    taken = 0

    def on_measurement(m: Measurement) -> None:
        nonlocal taken
        taken += m.phase is not Phase.ERROR
        log.info(
            "%s #%d: %s (%s) %s", m.metric, m.index + 1,
            "no value" if m.value is None else f"{m.value:.4g}", m.phase.value, m.message,
        )
        progress.update(min(100.0, 100.0 * taken / total))

    variables = query_variables(spec.app, spec.target, version.version,
                                previous.version if previous else None, step)
    log.info(
        "analysing %s %s%s: %d x %d metric(s) every %gs after %gs",
        spec.app, version.version, f" ({step})" if step else "", analysis.count,
        len(analysis.metrics), analysis.interval, analysis.initial_delay,
    )
    result = run_analysis(analysis, variables, provider, on_measurement=on_measurement,
                          sleep=clock.sleep, clock=clock.monotonic, now=clock.now,
                          watch=watch)
    progress.update(100.0)
    log.info("decision: %s (%s)", result.decision.verdict.value, result.decision.reason)
    return result
