"""What a release shows in Prefect: its run's name and tags, lifecycle events, artifacts.

Called by the release and rollback flows; everything here talks to the Prefect API of the
running flow and never changes a target.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext, get_run_context
from prefect.events import emit_event

from flows.tags import app_tag, label_tags
from tasks.releases import (
    MeasurementRecord,
    ReleaseResult,
    analysis_rows,
    render_report,
    threshold_text,
)
from tasks.spec import ReleaseSpec

HISTORY_LENGTH = 20


def label_run(spec: ReleaseSpec, name: str, strategy: str, trigger: str = "manual") -> None:
    """Name the running flow run (`demo 1.1.0 -> 1.2.0`) and tag it for the runs page filter.

    The name needs the version that runs now, which is only known inside the run. `trigger`
    is `manual`, `webhook` or `poller`; a manual run started through a deployment shows as
    `deployment` (the UI, `prefect deployment run`), one started by the CLI as `cli`.
    Outside a flow run (a test calling the code in-process) there is no run to name.
    """
    context = FlowRunContext.get()
    if context is None:
        return
    run = context.flow_run
    if trigger == "manual":
        trigger = "deployment" if run.deployment_id else "cli"
    with get_client(sync_client=True) as client:
        # The run's tags as they are now: the lock adds its own while the run goes on.
        tags = set(client.read_flow_run(run.id).tags) | label_tags(
            spec.app, spec.target.kind, strategy, trigger)
        client.update_flow_run(run.id, name=name, tags=sorted(tags))


def tag_run(*tags: str) -> None:
    """Add `tags` to the running flow run (the release flow records the image's digest and
    version)."""
    run = get_run_context().flow_run
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run.id).tags
        client.update_flow_run(run.id, tags=sorted(set(current) | set(tags)))


def emit(spec: ReleaseSpec, what: str, result: ReleaseResult) -> None:
    """A `ferryman.release.<what>` event with the app as resource, for Prefect automations."""
    run = get_run_context().flow_run
    emit_event(
        event=f"ferryman.release.{what}",
        resource={"prefect.resource.id": f"ferryman.app.{spec.app}",
                  "prefect.resource.name": spec.app},
        related=[{"prefect.resource.id": f"prefect.flow-run.{run.id}",
                  "prefect.resource.role": "flow-run", "prefect.resource.name": run.name}],
        payload={
            "app": spec.app, "version": result.version,
            "previous_version": result.previous_version, "outcome": result.outcome.value,
            "reason": result.reason, "digest": result.digest, "strategy": result.strategy,
            "trigger": result.trigger,
        },
    )


def publish_artifacts(spec: ReleaseSpec, result: ReleaseResult) -> None:
    """The release report, the analysis table and the app's release history, keyed per app
    so each key's history is browsable in the UI."""
    create_markdown_artifact(
        key=f"{spec.app}-release-report",
        markdown=render_report(result),
        description=f"{spec.app} {result.previous_version or 'new'} -> {result.version}: "
        f"{result.outcome.value}",
    )
    _publish_table(spec, result.version, result.measurements + result.rollback_measurements)
    _publish_history(spec, result)


def publish_analysis_so_far(spec: ReleaseSpec, version: str,
                            records: list[MeasurementRecord]) -> None:
    """The analysis table of a release that waits for a person: what they decide on."""
    _publish_table(spec, version, records, " so far")


def _publish_table(spec: ReleaseSpec, version: str, records: list[MeasurementRecord],
                   when: str = "") -> None:
    thresholds = {m.name: threshold_text(m.threshold) for m in spec.analysis.metrics}
    rows = analysis_rows(records, thresholds)
    if rows:
        create_table_artifact(
            key=f"{spec.app}-analysis", table=rows,
            description=f"every measurement of {spec.app} {version}{when}",
        )


def _publish_history(spec: ReleaseSpec, result: ReleaseResult) -> None:
    """The app's last releases (this one first), from the flow runs tagged with the app."""
    this = get_run_context().flow_run
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release", "rollback"])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[app_tag(spec.app)])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=HISTORY_LENGTH,
        )
    rows = [{
        "run": f"{spec.app} {result.previous_version or 'new'} -> {result.version}",
        "outcome": result.outcome.value, "seconds": round(result.seconds, 1),
        "started": this.start_time.isoformat(timespec="seconds") if this.start_time else "",
        "reason": result.reason,
    }]
    for run in runs:
        if run.id == this.id or run.state is None:
            continue
        rows.append({
            "run": run.name, "outcome": run.state.name,
            "seconds": round(run.total_run_time.total_seconds(), 1),
            "started": run.start_time.isoformat(timespec="seconds") if run.start_time else "",
            "reason": run.state.message or "",
        })
    create_table_artifact(
        key=f"{spec.app}-release-history", table=rows[:HISTORY_LENGTH],
        description=f"the last releases of {spec.app}, newest first",
    )
    get_run_logger().debug("release history of %s: %d run(s)", spec.app, len(rows))
