"""The release flow: admit -> get the image -> the strategy -> finish.

Admit: the spec, the upgrade window (a release outside it is deferred to the opening) and,
for a release a trigger started, the tag policy and newer requests (`flows.triggers`);
then the app's lock. Get the image: package + push, or, for a triggered release or a given
digest, locate it in the registry. The strategy (`tasks.strategies`: rolling, blue-green,
canary) runs over the app's Target and Router and ends promoted, or restored and verified.

The flow ends Completed when the new version was promoted (state name `Skipped` or
`Deferred` when it did not run now) and Failed otherwise (`RolledBack` for a clean
rollback, `Aborted` when someone stopped it), always with the release record as its result.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from prefect import flow, get_run_logger
from prefect.context import get_run_context
from prefect.states import State
from pydantic import BaseModel

from flows import SPECS
from flows.abort import abort_requested
from flows.approval import ask_a_person
from flows.liveness import bury_dead_holders
from flows.locks import app_lock
from flows.outcome import StepClock, finish, measurement_records, timed
from flows.recovery import recover_if_unjudged, restore_after_interruption
from flows.reporting import emit, label_run, tag_run
from flows.tags import digest_tag, version_tag
from flows.triggers import defer, newer_request, released_before, spec_path_for
from tasks.errors import FerrymanError
from tasks.platforms import get_router, get_target
from tasks.registries import get_registry, load_auth
from tasks.releases import (
    MeasurementRecord,
    Outcome,
    ReleaseResult,
)
from tasks.spec import (
    ReleaseSpec,
    app_of,
    load_spec,
    spec_files,
    validate_digest,
    validate_version,
    with_strategy,
)
from tasks.steps import locate, package, push, read_status
from tasks.strategies import Release, carry_out
from tasks.strategy_kinds import STRATEGY_KINDS
from tasks.tag_policy import admit_tag
from tasks.targets import InFlight, Version
from tasks.windows import schedule_release

EARLY_START = timedelta(seconds=60)
"""A run this close before its window opens waits for it instead of being deferred."""


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


def _app_choices() -> type[StrEnum] | type[str]:
    """The apps that have a spec under deployments/, for the Run form's drop-down (read
    when `prefect deploy` builds the form)."""
    apps = sorted({app for file in spec_files(SPECS) if (app := app_of(file))})
    return StrEnum("App", {app: app for app in apps}) if apps else str


App = _app_choices()
StrategyChoice = Literal[("as the spec says", *STRATEGY_KINDS)]


class BuildArg(BaseModel):
    """One `--build-arg NAME=VALUE` of the Run form."""

    name: str
    value: str = ""


@flow(name="release", log_prints=True, on_cancellation=[restore_after_interruption],
      on_crashed=[restore_after_interruption])
def release_form(
    app: App,  # type: ignore[valid-type]
    version: str,
    digest: str = "",
    strategy: StrategyChoice = "as the spec says",
    dry_run: bool = False,
    ignore_window: bool = False,
    build_args: list[BuildArg] = [],  # noqa: B006 (never mutated; an empty list in the form)
) -> State:
    """Release a version of an app: the Run form of the `release/manual` deployment.

    Args:
        app: the app; its spec is the one under deployments/ that names it.
        version: the image tag to release.
        digest: release this image, already in the registry, instead of building one.
        strategy: how the new version reaches users; the spec's own unless chosen here.
        dry_run: check everything (spec, window, registry, target) and change nothing.
        ignore_window: start now even outside the app's upgrade window.
        build_args: extra build arguments, when the image is built.
    """
    return _release(
        spec_path_for(str(app), ""), version, digest, "" if strategy == "as the spec says"
        else strategy, dry_run, ignore_window, {a.name: a.value for a in build_args},
        "manual", "", "",
    )


@flow(name="release", log_prints=True, on_cancellation=[restore_after_interruption],
      on_crashed=[restore_after_interruption])
def release(
    version: str,
    app: str = "",
    spec_path: str = "",
    digest: str = "",
    strategy: str = "",
    dry_run: bool = False,
    ignore_window: bool = False,
    trigger: Trigger = "manual",
    requested_by: str = "",
    deferred_from: str = "",
    build_args: dict[str, str] | None = None,
) -> State:
    """Release `version` of an app, with everything a caller can say: the `ferryman` CLI,
    the triggers' `release/on-push` deployment and the deferred runs of `release/deferred`.

    Args:
        version: the image tag to release.
        app: the app, whose spec is `deployments/<dir>/release.yaml` with this `app`.
        spec_path: a spec file instead (relative to the checkout, or absolute).
        digest: release this image, already in the registry, instead of building one.
        strategy: `rolling`, `blue-green` or `canary` instead of the spec's.
        dry_run: check everything (spec, window, policy, registry, target) and change nothing.
        ignore_window: start now even outside the app's upgrade window.
        trigger: who started the run; `webhook` and `poller` releases apply the tag policy,
            wait `tag_policy.settle` for a newer tag, and release only what was pushed.
        requested_by: in words, for the report.
        deferred_from: set on a release that waited for its window (by `flows.triggers.defer`).
        build_args: extra build arguments (manual releases that build).

    One release per app at a time: a second run for the same app waits for the first.
    """
    return _release(spec_path_for(app, spec_path), version, digest, strategy, dry_run,
                    ignore_window, build_args or {}, trigger, requested_by, deferred_from)


def _release(spec_path, version: str, digest: str, strategy: str, dry_run: bool,
             ignore_window: bool, build_args: dict[str, str], trigger: str,
             requested_by: str, deferred_from: str) -> State:
    steps = StepClock()
    spec = load_spec(spec_path)
    if strategy:
        if strategy not in STRATEGY_KINDS:
            raise FerrymanError(f"strategy {strategy!r}: choose one of {STRATEGY_KINDS}")
        spec = with_strategy(spec, strategy)
    validate_version(version)
    if digest:
        validate_digest(digest)
    request = Request(
        version=version, digest=digest or None, trigger=trigger, dry_run=dry_run,
        requested_by=requested_by or _requester(trigger),
        deferred=bool(deferred_from),
        build_args=build_args, admitted_at=datetime.now(UTC),
    )
    if spec.window is not None and not ignore_window:
        now = datetime.now(UTC)
        scheduled = get_run_context().flow_run.expected_start_time
        if request.deferred and scheduled is not None:
            # A release deferred to the opening is judged by when it was scheduled: a busy
            # worker that starts it a few seconds late must not put it off by a day.
            # As a plain datetime: Prefect's own type does not compare with the window's.
            now = min(now, datetime.fromtimestamp(scheduled.timestamp(), UTC))
        opening = schedule_release(spec.window, now)
        if opening - now > EARLY_START:
            return _defer(spec, request, opening, steps, strategy)
        if opening > now:  # a worker may start a scheduled run a little early
            time.sleep((opening - now).total_seconds())
        request = replace(request, admitted_at=max(now, opening))
    if request.coalesce and spec.tag_policy.settle and not dry_run:
        get_run_logger().info(
            "waiting %gs for a newer tag of %s before releasing %s",
            spec.tag_policy.settle, spec.app, version,
        )
        time.sleep(spec.tag_policy.settle)
    with app_lock(spec.app, clear_dead=bury_dead_holders):
        return _locked(spec, request, steps)


def _defer(spec: ReleaseSpec, request: Request, opening: datetime, steps: StepClock,
           strategy: str) -> State:
    """Record the release as pending: a run scheduled at the window's opening."""
    result = _record(spec, request, None)
    label_run(spec, f"{spec.app} {request.version} (outside the window)",
              spec.strategy.kind, request.trigger)
    if request.dry_run:
        result.outcome = Outcome.SKIPPED
        result.reason = f"dry run: outside the upgrade window; would wait until {opening:%c %Z}"
        return finish(spec, result, steps)
    me = get_run_context().flow_run
    parameters = {
        "spec_path": str(spec.source), "version": request.version,
        "digest": request.digest or "", "strategy": strategy, "trigger": request.trigger,
        "requested_by": request.requested_by, "build_args": request.build_args,
        "deferred_from": me.name,
    }
    pending = defer(parameters, opening, spec.app, request.version)
    result.outcome = Outcome.DEFERRED
    result.reason = (
        f"outside the upgrade window ({spec.window.schedule}, {spec.window.timezone}): "
        f"scheduled for {opening.isoformat(timespec='seconds')} as run {pending.name}"
    )
    return finish(spec, result, steps)


def _record(spec: ReleaseSpec, request: Request, before: Version | None) -> ReleaseResult:
    return ReleaseResult(
        app=spec.app, version=request.version, strategy=spec.strategy.kind,
        outcome=Outcome.FAILED, reason="not finished",
        previous_version=before.version if before else None,
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
    verdict = admit_tag(spec.tag_policy, request.version, running.version if running else None)
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


def _locked(spec: ReleaseSpec, request: Request, steps: StepClock) -> State:
    """The release itself, run while holding the app's release slot."""
    log = get_run_logger()
    version = request.version
    auth = load_auth(spec.registry)
    target = get_target(spec, auth)
    recovered = recover_if_unjudged(spec, target)
    if recovered:
        log.warning("%s", recovered)
    status = read_status(target)
    before = status.restore_point() or status.current
    result = _record(spec, request, before)
    skip = _skip_reason(spec, request, status.current)
    if skip is not None:
        label_run(spec, f"{spec.app} {version} (skipped)", spec.strategy.kind, request.trigger)
        result.outcome, result.reason = Outcome.SKIPPED, skip
        log.info("not releasing %s %s: %s", spec.app, version, skip)
        return finish(spec, result, steps)
    name = f"{spec.app} {before.version if before else 'new'} -> {version}"
    label_run(spec, f"{name} (dry run)" if request.dry_run else name, spec.strategy.kind,
              request.trigger)
    if request.dry_run:
        return _dry_run(spec, request, auth, result, steps)
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
    except FerrymanError as e:
        # Nothing was deployed: the app runs what it ran.
        result.reason = f"{e.__class__.__name__}: {e}"
        log.error("release failed before the deploy: %s", result.reason)
        return finish(spec, result, steps, request.admitted_at)
    tag_run(digest_tag(pushed.digest), version_tag(version))
    result.digest, result.image = pushed.digest, pushed.reference
    new = Version(version, pushed.reference)
    run = get_run_context().flow_run

    def measured() -> list[MeasurementRecord]:
        return [r for a in the_release.analyses
                for r in measurement_records(a.result, a.version.version, a.step)]

    the_release = Release(
        spec=spec, target=target, router=get_router(spec, target), new=new, stable=before,
        person=ask_a_person(spec, result, measured), interrupted=abort_requested(run.id),
        step=timed(steps),
    )
    mark = InFlight(str(run.id), version, datetime.now(UTC).isoformat(timespec="seconds"))
    ending = carry_out(the_release, mark)
    result.outcome, result.reason = ending.outcome, ending.reason
    result.notes = the_release.notes
    result.measurements = measured()
    if before is not None:
        result.rollback_measurements = measurement_records(ending.restored, before.version,
                                                           "restored")
    if ending.outcome is not Outcome.PROMOTED:
        log.warning("%s %s: %s", spec.app, ending.outcome.value, ending.reason)
    return finish(spec, result, steps, request.admitted_at)


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
        f"{result.previous_version or 'new'} -> {request.version} ({spec.strategy.kind})"
    )
    return finish(spec, result, steps)


