"""The rollback flow behind `ferryman rollback`: go back to the recorded earlier version."""

from __future__ import annotations

from prefect import flow
from prefect.states import State

from flows.liveness import bury_dead_holders
from flows.locks import app_lock
from flows.outcome import StepClock, finish, measurement_records, timed
from flows.reporting import label_run
from tasks.analysis.base import MetricProvider
from tasks.errors import FerrymanError, TargetError
from tasks.platforms import get_router, get_target
from tasks.registries import load_auth
from tasks.releases import Outcome, ReleaseResult
from tasks.spec import ReleaseSpec, load_spec
from tasks.steps import Clock, promote, read_status
from tasks.strategies.base import StepRunner
from tasks.strategies.restore import restore_app
from tasks.targets import Target, TargetStatus, Version


def rollback_point(status: TargetStatus) -> Version:
    """What to restore: the stable version if the app left it, else the one before it.

    Raises TargetError when the app records no earlier version than the one it runs.
    """
    if not status.exists or status.current is None:
        raise TargetError("nothing is deployed, so there is nothing to roll back")
    if status.stable is not None and (status.stable != status.current or status.unjudged()):
        return status.stable
    if status.previous is not None and status.previous != status.current:
        return status.previous
    raise TargetError(
        f"no version earlier than {status.current.version} is recorded on the service"
    )


@flow(name="rollback", log_prints=True)
def rollback_release(spec_path: str) -> State:
    """Restore the app's earlier version, verify it with the spec's analysis, mark it stable."""
    steps = StepClock()
    spec = load_spec(spec_path)
    with app_lock(spec.app, clear_dead=bury_dead_holders):
        target = get_target(spec, load_auth(spec.registry))
        result = rollback_app(spec, target, timed(steps))
        return finish(spec, result, steps)


def rollback_app(spec: ReleaseSpec, target: Target, step: StepRunner,
              provider: MetricProvider | None = None, clock: Clock | None = None
              ) -> ReleaseResult:
    """The rollback itself, run while holding the app's release slot: restore the rollback
    point, verify it, and promote it when it verified; returns the record. `step` runs each
    task (timed task runs in the flow; the functions themselves in-process), `provider` and
    `clock` are the analysis' (the spec's Prometheus and real time unless given)."""
    status = step(read_status, target)
    current = status.current
    result = ReleaseResult(
        app=spec.app, version=current.version if current else "none", strategy="rollback",
        outcome=Outcome.FAILED, reason="not finished",
    )
    try:
        to = rollback_point(status)
        label_run(spec, f"{spec.app} {current.version} -> {to.version} (rollback)", "rollback")
        result = result.model_copy(update={
            "version": to.version, "image": to.image, "digest": to.image.rpartition("@")[2],
            "previous_version": current.version, "previous_image": current.image,
        })
        ending = restore_app(spec, target, get_router(spec, target), current, to,
                             f"rollback of {current.version} asked for", step=step,
                             provider=provider, clock=clock)
        result.rollback_measurements = measurement_records(ending.restored, to.version,
                                                           "restored")
        if ending.outcome is Outcome.ROLLED_BACK:
            step(promote, target, to)
        result.outcome, result.reason = ending.outcome, ending.reason
    except FerrymanError as e:
        result.reason = f"{e.__class__.__name__}: {e}"
    return result
