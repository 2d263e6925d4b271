"""The release steps as Prefect tasks: thin wrappers that add retries, names and logging.

Each task takes the typed spec and an injected client or target and returns a typed value,
so tests call them with `.fn(...)`. Only transient errors are retried (`retry_transient`).
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE

from tasks.analysis.measurement import Measurement
from tasks.analysis.prometheus import MetricProvider, PrometheusProvider
from tasks.analysis.runner import AnalysisResult, run_analysis
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
from tasks.spec import ReleaseSpec
from tasks.targets import Target, TargetStatus, Version

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
    log = get_run_logger()
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
    log = get_run_logger()
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
    log = get_run_logger()
    return locate_image(
        get_registry(spec.registry), auth, spec.image.repository, version, digest, log=log.info
    )


@task(name="read status", **RETRIED)
def read_status(target: Target) -> TargetStatus:
    """What the target runs now and what it records as stable and previous."""
    status = target.status()
    get_run_logger().info(
        "running: %s; stable: %s; %d/%d replicas",
        status.current.version if status.current else "nothing",
        status.stable.version if status.stable else "none recorded",
        status.running_replicas,
        status.desired_replicas,
    )
    return status


@task(name="deploy", task_run_name="deploy {new.version}", **RETRIED)
def deploy(target: Target, new: Version, restore_point: Version | None) -> None:
    """Move the workload to `new`, recording `restore_point`; raises DeployFailed."""
    target.deploy(new, restore_point, progress=get_run_logger().info)


@task(name="promote", task_run_name="promote {new.version}", **RETRIED)
def promote(target: Target, new: Version) -> None:
    """Mark `new` as the stable version on the target."""
    target.promote(new)
    get_run_logger().info("%s is now the stable version", new.version)


@task(name="roll back", **RETRIED)
def rollback(target: Target, to: Version | None) -> None:
    """Restore `to` (or remove the workload if there is nothing to restore) and wait."""
    target.rollback(to, progress=get_run_logger().info)


@task(name="verify", task_run_name="verify {version.version}", cache_policy=NONE)
def verify(
    spec: ReleaseSpec,
    version: Version,
    previous: Version | None,
    provider: MetricProvider | None = None,
    step: str = "",
) -> AnalysisResult:
    """Run the spec's analysis on `version`; returns the decision and every measurement.

    Prometheus failures are `error` measurements, not exceptions, so this task never retries.
    """
    log = get_run_logger()
    analysis = spec.analysis
    provider = provider or PrometheusProvider(analysis.prometheus, analysis.query_timeout)
    total = analysis.count * len(analysis.metrics)
    progress_id = create_progress_artifact(
        progress=0.0,
        key=f"{spec.app}-analysis-progress",
        description=f"analysis of {spec.app} {version.version}",
    )
    taken = 0

    def on_measurement(m: Measurement) -> None:
        nonlocal taken
        taken += 1
        log.info(
            "%s #%d: %s (%s) %s", m.metric, m.index + 1,
            "no value" if m.value is None else f"{m.value:.4g}", m.phase.value, m.message,
        )
        update_progress_artifact(progress_id, progress=100.0 * taken / total)

    variables = {
        "app": spec.app,
        "version": version.version,
        "previous_version": previous.version if previous else "",
        "service": spec.target.service,
        "namespace": "",
        "step": step,
    }
    log.info(
        "analysing %s %s: %d x %d metric(s) every %gs after %gs",
        spec.app, version.version, analysis.count, len(analysis.metrics),
        analysis.interval, analysis.initial_delay,
    )
    result = run_analysis(analysis, variables, provider, on_measurement=on_measurement)
    update_progress_artifact(progress_id, progress=100.0)
    log.info("decision: %s (%s)", result.decision.verdict.value, result.decision.reason)
    return result
