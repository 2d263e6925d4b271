"""Leaving no app on an unjudged version: aborts, interrupted runs, and dead releases.

- `abort_requested`: a running release looks, between its steps, for someone's abort
  (`ferryman abort`, or Cancel in the Prefect UI) and restores the stable version.
- `restore_after_interruption`: the release flow's on_cancellation / on_crashed hook, for
  a run whose own code could not finish the job.
- `recover`: an app whose stable workload still carries the mark of a release that is no
  longer running is restored to its stable version and verified: by the next release of
  the app, by `ferryman recover`, and by the `recover` flow the stack runs on a schedule
  and on crashed runs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.states import State

from tasks.analysis.decision import Decision, Verdict
from tasks.errors import FerrymanError
from tasks.spec import ReleaseSpec
from tasks.steps import run_logger
from tasks.strategies.restore import Ending
from tasks.targets import Target

ABORT_TAG = "abort-requested"
"""The tag `ferryman abort` puts on a running release; `aborted-by:<who>` beside it."""
ABORTED_BY = "aborted-by:"
LOOK_EVERY = 2.0
"""Seconds between two looks at the Prefect API for an abort (a release asks each second)."""


def abort_requested(run_id: UUID) -> Callable[[], str | None]:
    """The `interrupted` check of a release run: who aborted it, or None.

    An abort is the run's `abort-requested` tag (`ferryman abort`) or its state turning
    Cancelling (Cancel in the Prefect UI). An API that does not answer is not an abort.
    """
    last = {"at": 0.0, "why": None}

    def check() -> str | None:
        if last["why"] is not None or time.monotonic() - last["at"] < LOOK_EVERY:
            return last["why"]
        last["at"] = time.monotonic()
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run_id)
        except Exception:  # the API being away must not stop a release by itself
            return None
        if ABORT_TAG in run.tags:
            who = [t.removeprefix(ABORTED_BY) for t in run.tags if t.startswith(ABORTED_BY)]
            last["why"] = f"by {who[0] if who else 'someone'} with ferryman abort"
        elif run.state is not None and run.state.type is StateType.CANCELLING:
            last["why"] = "cancelled in the Prefect UI or API"
        return last["why"]

    return check


def request_abort(run_id: UUID, by: str) -> None:
    """Ask a running release to stop and restore the stable version (`ferryman abort`)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        client.update_flow_run(run_id, tags=sorted(set(run.tags) | {ABORT_TAG,
                                                                    f"{ABORTED_BY}{by}"}))


SILENT_FOR = 90.0
"""A release run that sent no heartbeat for this long is dead (it sends one every
`HEARTBEAT_SECONDS`; see `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`)."""
HEARTBEAT_SECONDS = 30
PROCESS_TAG = "process:"


def process_tag() -> str:
    """`process:<host>:<pid>`: where a release runs, so that a recovery on the same host can
    tell at once that it died."""
    return f"{PROCESS_TAG}{socket.gethostname()}:{os.getpid()}"


def _process_gone(tags: list[str]) -> str | None:
    for tag in tags:
        if tag.startswith(PROCESS_TAG):
            host, _, pid = tag.removeprefix(PROCESS_TAG).rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                return f"its process {pid} on {host} is gone"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def why_dead(run_id: UUID | str) -> str | None:
    """Why a release run is no longer alive (ended, its process gone, silent), or None while
    it may still be working. An API that does not answer says nothing either way: None."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )
    from prefect.exceptions import ObjectNotFound

    try:
        run_id = UUID(str(run_id))
    except ValueError:
        return f"{run_id!r} is not a flow run id"
    try:
        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(run_id)
            except ObjectNotFound:
                return "no such run on the Prefect server"
            if run.state is not None and run.state.is_final():
                return f"it ended {run.state.name}"
            gone = _process_gone(run.tags)
            if gone:
                return gone
            since = datetime.now(UTC) - timedelta(seconds=SILENT_FOR)
            if run.start_time is None or run.start_time > since:
                return None  # too young to have missed heartbeats
            beats = client.read_events(filter=EventFilter(
                occurred=EventOccurredFilter(since=since),
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            ), limit=1).events
    except Exception:  # noqa: BLE001 (no answer is no proof of death)
        return None
    return None if beats else f"no heartbeat for {SILENT_FOR:.0f} s"


def bury(run_id: UUID | str, why: str, app: str) -> None:
    """A dead release run: mark it Crashed (so that the UI and the triggers stop counting it
    as alive) and free the app's lock it held."""
    from flows.locks import free_lease, lease_of

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
        lease = lease_of(run.tags)
        if lease is not None:
            free_lease(lease)
        if run.state is not None and not run.state.is_final():
            from prefect.states import Crashed

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run.id, Crashed(
                    message=f"{why}; {app} is being restored by recovery"), force=True)
    except Exception as e:  # noqa: BLE001 (recovery goes on; the lease runs out by itself)
        run_logger().warning("could not close the dead run %s: %s", run_id, e)


LOCK_HOLDING_FLOWS = ["release", "rollback", "recover"]
"""The flows that hold an app's lock while they change it."""


def dead_releases(app: str) -> list[tuple[FlowRun, str]]:
    """The runs of `app` that died while they may have held its lock (releases, rollbacks,
    recoveries): the ones Prefect still counts as running or waiting whose process is gone,
    and the ones marked Crashed (whose hold on the app's lock outlives them until it is
    freed), with why they are dead."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )

    from flows.locks import LEASE_SECONDS

    def runs(states: list[StateType], **conditions) -> list[FlowRun]:
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=LOCK_HOLDING_FLOWS)),
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"app:{app}"]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
                    **conditions,
                ),
                limit=50,
            )

    recently = FlowRunFilterEndTime(after_=datetime.now(UTC) - timedelta(seconds=LEASE_SECONDS))
    candidates = runs([StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING])
    candidates += runs([StateType.CRASHED], end_time=recently)
    me = FlowRunContext.get()
    found = []
    for run in candidates:
        if me is not None and run.id == me.flow_run.id:
            continue
        why = why_dead(run.id)
        if why is not None:
            found.append((run, why))
    return found


def recover(spec: ReleaseSpec, target: Target, why: str) -> Ending | None:
    """Restore the app's stable version and verify it when a release left it unjudged;
    returns how it ended, or None when there was nothing to do.

    Only for releases that are no longer running: callers hold the app's lock.
    """
    from tasks.routers import get_router
    from tasks.steps import Clock
    from tasks.strategies.base import Release, call_task
    from tasks.strategies.restore import restore_and_verify

    status = target.status()
    if not status.unjudged():
        return None
    mark = status.in_flight
    to = status.restore_point()
    left = f"release of {mark.version} (run {mark.run_id})" if mark else "an earlier release"
    log = run_logger()
    log.warning("%s left %s unjudged: restoring %s", left, spec.app,
                to.version if to else "nothing (no stable version)")
    release = Release(
        spec=spec, target=target, router=get_router(target),
        new=status.current or to, stable=to, person=nobody, step=call_task, clock=Clock(),
    )
    ending = restore_and_verify(release, Decision(Verdict.ROLLBACK, f"{why}: {left} did not "
                                                  "finish"))
    if mark is not None:
        _crashed(mark.run_id, f"its process died; {spec.app} was restored by recovery")
    return ending


def nobody(question, approval) -> Decision:
    """The `person` of a recovery or a rollback: nobody is asked, nothing is promoted."""
    return Decision(Verdict.ROLLBACK, "nobody to ask")


def _crashed(run_id: str, message: str) -> None:
    """Mark a release run that died while Running (or Paused) as Crashed, so that the UI and
    the triggers' newer-request check stop counting it as alive."""
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
            if run.state is not None and not run.state.is_final():
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    except (ValueError, Exception) as e:  # an unknown id, the API away: recovery goes on
        run_logger().warning("could not mark run %s crashed: %s", run_id, e)


def recover_if_unjudged(spec: ReleaseSpec, target: Target) -> str | None:
    """First thing a release does under the app's lock: finish what a dead one left;
    returns what was done, in words. Raises FerrymanError when the release that left its
    mark is still alive (it lost the lock, say, to an API that stopped answering)."""
    mark = target.status().in_flight
    me = FlowRunContext.get()
    mine = me is not None and mark is not None and mark.run_id == str(me.flow_run.id)
    if mark is not None and not mine and why_dead(mark.run_id) is None:
        raise FerrymanError(f"the release of {mark.version} (run {mark.run_id}) is still "
                            f"changing {spec.app}; not starting another one beside it")
    try:
        ending = recover(spec, target, "before this release")
        return None if ending is None else f"{ending.outcome.value}: {ending.reason}"
    except FerrymanError as e:
        raise FerrymanError(f"{spec.app} was left unjudged by an earlier release and could "
                            f"not be restored: {e}") from e


def restore_after_interruption(flow, flow_run, state) -> None:
    """on_cancellation / on_crashed hook of the release flow, for a run killed before it
    could restore by itself (a worker's SIGKILL 30 s after its SIGTERM, a lost process).

    Prefect calls it by keyword (`flow`, `flow_run`, `state`), in a fresh process when a
    worker ran the flow: everything comes from the run's parameters and tags.
    """
    from flows.locks import app_lock, free_lease, lease_of
    from flows.triggers import spec_path_for
    from tasks.registries import load_auth
    from tasks.spec import load_spec
    from tasks.targets import get_target

    parameters = flow_run.parameters or {}
    try:
        with get_client(sync_client=True) as client:
            tags = client.read_flow_run(flow_run.id).tags
        lease = lease_of(tags)
        if lease is not None:
            free_lease(lease)  # the run is over, and so is its hold on the app
        spec = load_spec(spec_path_for(str(parameters.get("app") or ""),
                                       str(parameters.get("spec_path") or "")))
        target = get_target(spec, load_auth(spec.registry))
        mark = target.status().in_flight
        if mark is not None and mark.run_id == str(flow_run.id):
            with app_lock(spec.app, wait=600):
                recover(spec, target, f"the run was {state.name.lower()}")
    except Exception as e:  # noqa: BLE001 (a hook must not raise; recovery finds the mark)
        run_logger().error("could not restore after the run was %s: %s", state.name, e)


def active_release_of(app: str):
    """The release run of `app` that runs or waits for a person now, or None."""
    from flows.triggers import release_run_of

    return release_run_of(app, [StateType.RUNNING, StateType.PAUSED])


@flow(name="recover", log_prints=True)
def recover_app(spec_path: str = "", app: str = "", crashed_run_id: str = "") -> State:
    """Restore and verify the stable version of an app that a release left unjudged:
    `ferryman recover`, and the `recover/on-crash` deployment that Prefect starts when a
    release run crashed or went silent (`crashed_run_id`)."""
    from flows.locks import app_lock
    from flows.release import StepClock, finish, measurement_records
    from flows.reporting import label_run
    from flows.triggers import spec_path_for
    from tasks.registries import load_auth
    from tasks.releases import Outcome, ReleaseResult
    from tasks.spec import load_spec
    from tasks.targets import get_target

    steps = StepClock()
    if crashed_run_id and not (app or spec_path):
        app, spec_path = _app_of_run(crashed_run_id)
    spec = load_spec(spec_path_for(app, spec_path))
    log = run_logger()
    for run, why in dead_releases(spec.app):
        log.warning("release run %s (%s) is dead: %s", run.name, run.id, why)
        bury(run.id, why, spec.app)
    target = get_target(spec, load_auth(spec.registry))
    status = target.status()
    current = status.current.version if status.current else "nothing"
    label_run(spec, f"{spec.app} recovery", "recovery")
    result = ReleaseResult(app=spec.app, version=current, strategy="recovery",
                           outcome=Outcome.SKIPPED,
                           reason=f"nothing to recover: {spec.app} runs {current}, judged")
    mark = status.in_flight
    alive = mark is not None and why_dead(mark.run_id) is None
    if alive:
        result.reason = (f"the release of {mark.version} (run {mark.run_id}) is still running; "
                         "stop it with `ferryman abort`")
    elif status.unjudged():
        with app_lock(spec.app):
            ending = recover(spec, target, "recovery")
        if ending is not None:
            to = status.restore_point()
            result.version = to.version if to else "none"
            result.previous_version = current
            result.outcome, result.reason = ending.outcome, ending.reason
            result.rollback_measurements = measurement_records(
                ending.restored, result.version, "restored")
    return finish(spec, result, steps)


def _app_of_run(run_id: str) -> tuple[str, str]:
    """The app and spec path a release run released (its parameters)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    parameters = run.parameters or {}
    return str(parameters.get("app") or ""), str(parameters.get("spec_path") or "")
