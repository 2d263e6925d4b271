"""The release flow: package -> push -> deploy -> verify -> promote, or roll back and verify.

Reads like the release itself; every step is a task of `tasks.steps`. The flow ends
Completed when the new version was promoted and Failed otherwise (state name `RolledBack`
for a clean rollback), always with the release record as its result.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from prefect import flow, get_run_logger, pause_flow_run
from prefect.input import RunInput
from prefect.states import Completed, Failed, State

from flows.locks import app_lock
from flows.reporting import emit, label_run, publish_artifacts
from tasks.analysis.decision import Decision, Verdict
from tasks.analysis.runner import AnalysisResult
from tasks.errors import DeployFailed, FerrymanError
from tasks.registries import load_auth
from tasks.releases import (
    MeasurementRecord,
    Outcome,
    ReleaseResult,
    StepRecord,
)
from tasks.spec import ReleaseSpec, load_spec, validate_version
from tasks.steps import deploy, package, promote, push, read_status, rollback, verify
from tasks.targets import Target, Version, get_target

OUTCOME_EVENTS = {
    Outcome.PROMOTED: "promoted", Outcome.ROLLED_BACK: "rolled-back", Outcome.FAILED: "failed",
}
"""The lifecycle event each outcome emits: `ferryman.release.<name>`."""


class Approval(RunInput):
    """The form a person answers when the analysis is inconclusive and the spec says pause."""

    promote: bool = False
    comment: str = ""


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


def _ask_a_person(spec: ReleaseSpec, decision: Decision) -> Decision:
    """Pause the run with an approval form; no answer within pause_timeout rolls back."""
    log = get_run_logger()
    log.warning("analysis inconclusive (%s): waiting for a person's decision", decision.reason)
    try:
        answer = pause_flow_run(wait_for_input=Approval, timeout=int(spec.analysis.pause_timeout))
    except Exception as e:  # a pause that timed out or could not be answered: be safe
        return Decision(Verdict.ROLLBACK, f"{decision.reason}; no decision from a person ({e})")
    note = f" ({answer.comment})" if answer.comment else ""
    if answer.promote:
        return Decision(Verdict.PROMOTE, f"promoted by a person after: {decision.reason}{note}")
    return Decision(Verdict.ROLLBACK, f"rolled back by a person after: {decision.reason}{note}")


def measurement_records(result: AnalysisResult | None, version: str) -> list[MeasurementRecord]:
    """An analysis' measurements as release-record entries of `version`."""
    if result is None:
        return []
    return [MeasurementRecord.of(m, version) for m in result.measurements]


def restore_and_verify(
    spec: ReleaseSpec, target: Target, to: Version | None, steps: StepClock
) -> tuple[Outcome, str, AnalysisResult | None]:
    """Roll back and verify the restored version. Returns the outcome and why."""
    with steps.step("roll back"):
        rollback(target, to)
    if to is None:
        return Outcome.ROLLED_BACK, "removed the new service: there was no earlier version", None
    with steps.step(f"verify {to.version}"):
        check = verify(spec, to, None)
    if check.decision.verdict is Verdict.PROMOTE:
        return Outcome.ROLLED_BACK, f"{to.version} restored and verified", check
    return Outcome.FAILED, (
        f"{to.version} restored but it did not verify: {check.decision.reason}"
    ), check


@flow(name="release", log_prints=True)
def release(
    spec_path: str, version: str, build_args: dict[str, str] | None = None
) -> State:
    """Release `version` of the app described by the spec at `spec_path`.

    One release per app at a time: a second run for the same app waits for the first.
    """
    steps = StepClock()
    spec = load_spec(spec_path)
    validate_version(version)
    with app_lock(spec.app):
        return _release(spec, version, build_args or {}, steps)


def _release(
    spec: ReleaseSpec, version: str, build_args: dict[str, str], steps: StepClock
) -> State:
    """The release itself, run while holding the app's release slot."""
    log = get_run_logger()
    auth = load_auth(spec.registry)
    target = get_target(spec, auth)
    status = read_status(target)
    before = status.restore_point() or status.current
    label_run(spec, f"{spec.app} {before.version if before else 'new'} -> {version}", spec.strategy)

    result = ReleaseResult(
        app=spec.app, version=version, strategy=spec.strategy, outcome=Outcome.FAILED,
        reason="not finished", previous_version=before.version if before else None,
        previous_image=before.image if before else None,
    )
    analysis: AnalysisResult | None = None
    restored: AnalysisResult | None = None
    emit(spec, "started", result)
    try:
        with steps.step("package"):
            built = package(spec, version, build_args)
        with steps.step("push"):
            pushed = push(spec, built, auth)
        result.digest, result.image = pushed.digest, pushed.reference
        new = Version(version, pushed.reference)
        try:
            with steps.step("deploy"):
                deploy(target, new, before)
        except DeployFailed as e:
            decision = Decision(Verdict.ROLLBACK, f"deploy failed: {e}")
        else:
            with steps.step("verify"):
                analysis = verify(spec, new, before)
            decision = analysis.decision
            if decision.verdict is Verdict.PAUSE:
                emit(spec, "paused", result)
                decision = _ask_a_person(spec, decision)
        if decision.verdict is Verdict.PROMOTE:
            with steps.step("promote"):
                promote(target, new)
            result.outcome, result.reason = Outcome.PROMOTED, decision.reason
        else:
            log.warning("rolling back %s %s: %s", spec.app, version, decision.reason)
            outcome, how, restored = restore_and_verify(spec, target, before, steps)
            result.outcome, result.reason = outcome, f"{decision.reason}; {how}"
    except FerrymanError as e:
        # Raised before or during a deploy that did not finish: the target's labels still
        # name the restore point, so `ferryman rollback` can finish what this could not.
        result.reason = f"{e.__class__.__name__}: {e}"
        log.error("release failed: %s", result.reason)
    result.measurements = measurement_records(analysis, version)
    if before is not None:
        result.rollback_measurements = measurement_records(restored, before.version)
    return finish(spec, result, steps)


def finish(spec: ReleaseSpec, result: ReleaseResult, steps: StepClock) -> State:
    """Close a release or rollback: its step times, artifacts, outcome event and state."""
    result.steps = steps.records
    result.seconds = time.monotonic() - steps.origin
    publish_artifacts(spec, result)
    emit(spec, OUTCOME_EVENTS[result.outcome], result)
    get_run_logger().info("outcome: %s (%s)", result.outcome.value, result.reason)
    return final_state(result)


def final_state(result: ReleaseResult) -> State:
    """Completed for a promotion; Failed (named RolledBack for a clean rollback) otherwise.

    The release record is the state's data either way, so callers read it with
    `state.result(raise_on_failure=False)`.
    """
    if result.outcome is Outcome.PROMOTED:
        return Completed(message=result.reason, data=result)
    name = "RolledBack" if result.outcome is Outcome.ROLLED_BACK else "Failed"
    return Failed(name=name, message=result.reason, data=result)
