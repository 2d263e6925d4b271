"""How a release, rollback or recovery run ends: its steps timed, its record published, its
outcome event emitted and its final state (`finish`), one home for all three flows."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.states import Cancelled, Completed, Failed, State

from flows.reporting import emit, publish_artifacts
from tasks.analysis.runner import AnalysisResult
from tasks.releases import MeasurementRecord, Outcome, ReleaseResult, StepRecord
from tasks.spec import ReleaseSpec
from tasks.steps import verify
from tasks.windows import overrun_seconds

OUTCOME_EVENTS = {
    Outcome.PROMOTED: "promoted", Outcome.ROLLED_BACK: "rolled-back", Outcome.FAILED: "failed",
    Outcome.SKIPPED: "skipped", Outcome.DEFERRED: "deferred", Outcome.ABORTED: "aborted",
}
"""The lifecycle event each outcome emits: `ferryman.release.<name>`."""


class StepClock:
    """Times each step for the report, relative to the release's start (its creation)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()
        self.records: list[StepRecord] = []

    @contextmanager
    def step(self, name: str):
        start = time.monotonic() - self.origin
        outcome = "ok"
        try:
            yield
        except BaseException as e:
            outcome = f"failed: {e.__class__.__name__}"
            raise
        finally:
            end = time.monotonic() - self.origin
            self.records.append(StepRecord(name=name, start=start, end=end, outcome=outcome))


def measurement_records(result: AnalysisResult | None, version: str,
                        step: str = "") -> list[MeasurementRecord]:
    """An analysis' measurements as release-record entries of `version` at `step`."""
    if result is None:
        return []
    return [MeasurementRecord.of(m, version, step) for m in result.measurements]


def timed(steps: StepClock):
    """A strategy's step runner that times each step for the report."""

    def run(task, *args, **kwargs):
        name = task.name
        if task is verify:
            name = f"verify {args[1].version} {args[4]}".strip()
        with steps.step(name):
            return task(*args, **kwargs)

    return run


def finish(spec: ReleaseSpec, result: ReleaseResult, steps: StepClock,
           admitted_at: datetime | None = None) -> State:
    """Close a release, rollback or recovery: its step times, how it kept to its upgrade
    window (a release let in at `admitted_at`), artifacts, outcome event and state."""
    if admitted_at is not None and spec.window is not None:
        result.window_overrun = overrun_seconds(spec.window, admitted_at, datetime.now(UTC))
        if result.window_overrun:
            get_run_logger().warning("the release ran %.0f s past the end of its upgrade "
                                     "window", result.window_overrun)
    result.steps = steps.records
    result.seconds = time.monotonic() - steps.origin
    publish_artifacts(spec, result)
    emit(spec, OUTCOME_EVENTS[result.outcome], result)
    get_run_logger().info("outcome: %s (%s)", result.outcome.value, result.reason)
    return final_state(result)


def final_state(result: ReleaseResult) -> State:
    """Completed for a promotion; Failed (named RolledBack for a clean rollback, Aborted
    when someone stopped it) otherwise.

    The release record is the state's data either way, so callers read it with
    `state.result(raise_on_failure=False)`.
    """
    if result.outcome is Outcome.PROMOTED:
        return Completed(message=result.reason, data=result)
    if result.outcome in (Outcome.SKIPPED, Outcome.DEFERRED):
        return Completed(name=result.outcome.value.capitalize(), message=result.reason,
                         data=result)
    if result.outcome is Outcome.ABORTED and _cancelling():
        # Cancelled from the UI or API: Prefect accepts only Cancelled from here on.
        return Cancelled(name="Aborted", message=result.reason, data=result)
    names = {Outcome.ROLLED_BACK: "RolledBack", Outcome.ABORTED: "Aborted"}
    return Failed(name=names.get(result.outcome, "Failed"), message=result.reason,
                  data=result)


def _cancelling() -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(get_run_context().flow_run.id).state
    return state is not None and state.is_cancelling()
