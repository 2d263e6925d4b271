"""Leaving no app on an unjudged version: recovery of what a release left unjudged.

- `recover`: an app whose stable workload still carries the mark of a release that is no
  longer running is restored to its stable version and verified: by the next release of
  the app (`recover_if_unjudged`), by `ferryman recover`, and by the `recover/on-crash`
  deployment that Prefect starts when a release run crashed or went silent (prefect.yaml).
- `restore_after_interruption`: the release flow's on_cancellation / on_crashed hook, for
  a run whose own code could not finish the job.

Who is alive is `flows.liveness`'s question; aborts are `flows.abort`'s.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.states import State

from flows.liveness import bury, bury_dead_holders, crash, dead_releases, why_dead
from flows.locks import app_lock, free_lease
from flows.outcome import StepClock, finish, measurement_records
from flows.reporting import label_run
from flows.tags import lease_of
from flows.triggers import release_run_of, spec_path_for
from tasks.analysis.base import MetricProvider
from tasks.errors import FerrymanError
from tasks.platforms import get_router, get_target
from tasks.registries import load_auth
from tasks.releases import Outcome, ReleaseResult
from tasks.spec import ReleaseSpec, load_spec
from tasks.steps import Clock, run_logger
from tasks.strategies.base import StepRunner, call_task
from tasks.strategies.restore import Ending, restore_app
from tasks.targets import Target


def recover(spec: ReleaseSpec, target: Target, why: str, *, step: StepRunner = call_task,
            provider: MetricProvider | None = None, clock: Clock | None = None
            ) -> Ending | None:
    """Restore the app's stable version and verify it when a release left it unjudged;
    returns how it ended, or None when there was nothing to do. `step`, `provider` and
    `clock` are the Release's (tasks as Prefect task runs, the spec's Prometheus, real time
    unless given: the in-process tests give their own).

    Only for releases that are no longer running: callers hold the app's lock.
    """
    status = target.status()
    if not status.unjudged():
        return None
    mark = status.in_flight
    to = status.restore_point()
    left = f"release of {mark.version} (run {mark.run_id})" if mark else "an earlier release"
    log = run_logger()
    log.warning("%s left %s unjudged: restoring %s", left, spec.app,
                to.version if to else "nothing (no stable version)")
    ending = restore_app(spec, target, get_router(spec, target), status.current or to, to,
                         f"{why}: {left} did not finish", step=step, provider=provider,
                         clock=clock)
    if mark is not None:
        crash(mark.run_id, f"its process died; {spec.app} was restored by recovery")
    return ending


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
            with app_lock(spec.app, wait=600, clear_dead=bury_dead_holders):
                recover(spec, target, f"the run was {state.name.lower()}")
    except Exception as e:  # noqa: BLE001 (a hook must not raise; recovery finds the mark)
        run_logger().error("could not restore after the run was %s: %s", state.name, e)


def active_release_of(app: str):
    """The release run of `app` that runs or waits for a person now, or None."""
    return release_run_of(app, [StateType.RUNNING, StateType.PAUSED])


@flow(name="recover", log_prints=True)
def recover_app(spec_path: str = "", app: str = "", crashed_run_id: str = "") -> State:
    """Restore and verify the stable version of an app that a release left unjudged:
    `ferryman recover`, and the `recover/on-crash` deployment that Prefect starts when a
    release run crashed or went silent (`crashed_run_id`)."""
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
        with app_lock(spec.app, clear_dead=bury_dead_holders):
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
