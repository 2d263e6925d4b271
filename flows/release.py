"""The release flow: package -> push -> deploy -> verify -> promote, or roll back and verify.

Reads like the release itself; every step is a task of `tasks.steps`. A release a trigger
started (webhook, poller) builds nothing: it locates the pushed image and deploys its digest.
Before anything changes, a release outside its app's upgrade window is deferred to the
opening, and a triggered one gives way to a newer request (`flows.triggers`).

The flow ends Completed when the new version was promoted (state name `Skipped` or
`Deferred` when it did not run now) and Failed otherwise (`RolledBack` for a clean
rollback), always with the release record as its result.
"""

from __future__ import annotations

import getpass
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from prefect import flow, get_run_logger, pause_flow_run
from prefect.context import get_run_context
from prefect.input import RunInput
from prefect.states import Completed, Failed, State

from flows.locks import app_lock
from flows.reporting import emit, label_run, publish_artifacts, tag_run
from flows.triggers import (
    defer,
    digest_tag,
    newer_request,
    released_before,
    spec_path_for,
    version_tag,
)
from tasks.analysis.decision import Decision, Verdict
from tasks.analysis.runner import AnalysisResult
from tasks.errors import DeployFailed, FerrymanError
from tasks.registries import get_registry, load_auth
from tasks.releases import (
    MeasurementRecord,
    Outcome,
    ReleaseResult,
    StepRecord,
)
from tasks.spec import ReleaseSpec, load_spec, validate_digest, validate_version
from tasks.steps import (
    deploy,
    locate,
    package,
    promote,
    push,
    read_status,
    rollback,
    verify,
)
from tasks.tag_policy import decide
from tasks.targets import Target, Version, get_target
from tasks.windows import overrun_seconds, schedule_release

OUTCOME_EVENTS = {
    Outcome.PROMOTED: "promoted", Outcome.ROLLED_BACK: "rolled-back", Outcome.FAILED: "failed",
    Outcome.SKIPPED: "skipped", Outcome.DEFERRED: "deferred",
}
"""The lifecycle event each outcome emits: `ferryman.release.<name>`."""
EARLY_START = timedelta(seconds=60)
"""A run this close before its window opens waits for it instead of being deferred."""


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


Trigger = Literal["manual", "webhook", "poller"]


@dataclass(frozen=True)
class Request:
    """What a release run was asked to do, as the flow's parameters say it."""

    version: str
    digest: str | None
    trigger: str
    requested_by: str
    dry_run: bool
    deferred: bool
    """It waited for its upgrade window (`deferred_from` was set)."""
    build_args: dict[str, str]
    admitted_at: datetime
    """When the release was let in (its window open): the report's overrun counts from here."""

    @property
    def coalesce(self) -> bool:
        """Give way to a newer request of the same app (triggered and deferred releases)."""
        return self.trigger != "manual" or self.deferred

    @property
    def prebuilt(self) -> bool:
        """Release an image that is in the registry already instead of building one."""
        return self.digest is not None or self.trigger != "manual"


def _requester(trigger: str) -> str:
    if trigger != "manual":
        return f"a {trigger} trigger"
    if get_run_context().flow_run.deployment_id:
        return "a person, through the Prefect UI or API"
    return f"{getpass.getuser()} with the ferryman CLI"


@flow(name="release", log_prints=True)
def release(
    version: str,
    app: str = "",
    spec_path: str = "",
    digest: str = "",
    strategy: Literal["rolling"] | None = None,
    dry_run: bool = False,
    ignore_window: bool = False,
    trigger: Trigger = "manual",
    requested_by: str = "",
    deferred_from: str = "",
    build_args: dict[str, str] | None = None,
) -> State:
    """Release `version` of an app: the app's spec under deployments/, or the one at `spec_path`.

    Args:
        version: the image tag to release.
        app: the app, whose spec is `deployments/<dir>/release.yaml` with this `app`.
        spec_path: a spec file instead (relative to the checkout, or absolute).
        digest: release this image, already in the registry, instead of building one.
        strategy: override the spec's strategy.
        dry_run: check everything (spec, window, policy, registry, target) and change nothing.
        ignore_window: start now even outside the app's upgrade window.
        trigger: who started the run; `webhook` and `poller` releases apply the tag policy,
            wait `tag_policy.settle` for a newer tag, and release only what was pushed.
        requested_by: in words, for the report.
        deferred_from: set on a release that waited for its window (by `flows.triggers.defer`).
        build_args: extra build arguments (manual releases that build).

    One release per app at a time: a second run for the same app waits for the first.
    """
    steps = StepClock()
    spec = load_spec(spec_path_for(app, spec_path))
    if strategy is not None:
        spec = spec.model_copy(update={"strategy": strategy})
    validate_version(version)
    if digest:
        validate_digest(digest)
    request = Request(
        version=version, digest=digest or None, trigger=trigger, dry_run=dry_run,
        requested_by=requested_by or _requester(trigger),
        deferred=bool(deferred_from),
        build_args=build_args or {}, admitted_at=datetime.now(UTC),
    )
    if spec.window is not None and not ignore_window:
        now = datetime.now(UTC)
        opening = schedule_release(spec.window, now)
        if opening - now > EARLY_START:
            return _defer(spec, request, opening, steps)
        if opening > now:  # a worker may start a scheduled run a little early
            time.sleep((opening - now).total_seconds())
        request = replace(request, admitted_at=max(now, opening))
    if request.coalesce and spec.tag_policy.settle and not dry_run:
        get_run_logger().info(
            "waiting %gs for a newer tag of %s before releasing %s",
            spec.tag_policy.settle, spec.app, version,
        )
        time.sleep(spec.tag_policy.settle)
    with app_lock(spec.app):
        return _release(spec, request, steps)


def _defer(spec: ReleaseSpec, request: Request, opening: datetime, steps: StepClock) -> State:
    """Record the release as pending: a run scheduled at the window's opening."""
    result = _record(spec, request, None)
    label_run(spec, f"{spec.app} {request.version} (outside the window)", spec.strategy,
              request.trigger)
    if request.dry_run:
        result.outcome = Outcome.SKIPPED
        result.reason = f"dry run: outside the upgrade window; would wait until {opening:%c %Z}"
        return finish(spec, result, steps)
    parameters = dict(get_run_context().flow_run.parameters)
    pending = defer(parameters, opening, spec.app, request.version)
    result.outcome = Outcome.DEFERRED
    result.reason = (
        f"outside the upgrade window ({spec.window.schedule}, {spec.window.timezone}): "
        f"scheduled for {opening.isoformat(timespec='seconds')} as run {pending.name}"
    )
    return finish(spec, result, steps)


def _record(spec: ReleaseSpec, request: Request, before: Version | None) -> ReleaseResult:
    return ReleaseResult(
        app=spec.app, version=request.version, strategy=spec.strategy, outcome=Outcome.FAILED,
        reason="not finished", previous_version=before.version if before else None,
        previous_image=before.image if before else None, trigger=request.trigger,
        started_by=request.requested_by,
    )


def _skip_reason(spec: ReleaseSpec, request: Request, running: Version | None) -> str | None:
    """Why a triggered (or deferred) release should not run now, or None."""
    if request.coalesce:
        newer = newer_request(spec.app, request.version)
        if newer is not None:
            version = (newer.parameters or {}).get("version")
            return f"superseded by the newer request {version} (run {newer.name})"
    if request.trigger == "manual":
        return None
    verdict = decide(spec.tag_policy, request.version, running.version if running else None)
    if not verdict.release:
        return verdict.reason
    # Docker Hub sends no digest: then the version stands in for the image, so that a
    # redelivery of a rolled-back tag does not release it again by itself.
    earlier = released_before(spec.app, request.version, request.digest)
    if earlier is not None:
        state = earlier.state.name if earlier.state else "unknown"
        image = request.digest or f"{request.version} (the sender gave no digest)"
        return f"{image} was released before, by run {earlier.name} ({state})"
    return None


def _release(spec: ReleaseSpec, request: Request, steps: StepClock) -> State:
    """The release itself, run while holding the app's release slot."""
    log = get_run_logger()
    version = request.version
    auth = load_auth(spec.registry)
    target = get_target(spec, auth)
    status = read_status(target)
    before = status.restore_point() or status.current
    result = _record(spec, request, before)
    skip = _skip_reason(spec, request, status.current)
    if skip is not None:
        label_run(spec, f"{spec.app} {version} (skipped)", spec.strategy, request.trigger)
        result.outcome, result.reason = Outcome.SKIPPED, skip
        log.info("not releasing %s %s: %s", spec.app, version, skip)
        return finish(spec, result, steps)
    name = f"{spec.app} {before.version if before else 'new'} -> {version}"
    label_run(spec, f"{name} (dry run)" if request.dry_run else name, spec.strategy,
              request.trigger)
    if request.dry_run:
        return _dry_run(spec, request, auth, result, steps)
    analysis: AnalysisResult | None = None
    restored: AnalysisResult | None = None
    emit(spec, "started", result)
    try:
        if request.prebuilt:
            with steps.step("locate"):
                pushed = locate(spec, version, request.digest, auth)
        else:
            with steps.step("package"):
                built = package(spec, version, request.build_args)
            with steps.step("push"):
                pushed = push(spec, built, auth)
        tag_run(digest_tag(pushed.digest), version_tag(version))
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
    if spec.window is not None:
        result.window_overrun = overrun_seconds(
            spec.window, request.admitted_at, datetime.now(UTC)
        )
        if result.window_overrun:
            log.warning("the release ran %.0f s past the end of its upgrade window",
                        result.window_overrun)
    return finish(spec, result, steps)


def _dry_run(
    spec: ReleaseSpec, request: Request, auth, result: ReleaseResult, steps: StepClock
) -> State:
    """Check the registry side too (the image is there, or the registry takes the login)."""
    result.outcome = Outcome.SKIPPED
    try:
        if request.prebuilt:
            with steps.step("locate"):
                pushed = locate(spec, request.version, request.digest, auth)
            what = f"deploy {pushed.reference}"
        else:
            what = f"build {spec.image.context} and push it to {get_registry(spec.registry).name}"
    except FerrymanError as e:
        result.outcome = Outcome.FAILED
        result.reason = f"dry run: {e.__class__.__name__}: {e}"
        return finish(spec, result, steps)
    result.reason = (
        f"dry run: would {what}, then release {spec.app} "
        f"{result.previous_version or 'new'} -> {request.version} ({spec.strategy})"
    )
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
    if result.outcome in (Outcome.SKIPPED, Outcome.DEFERRED):
        return Completed(name=result.outcome.value.capitalize(), message=result.reason,
                         data=result)
    name = "RolledBack" if result.outcome is Outcome.ROLLED_BACK else "Failed"
    return Failed(name=name, message=result.reason, data=result)
