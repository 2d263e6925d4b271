"""Going back, the same for every strategy: take the new version off the app's address,
put the stable workload back on the stable version at full size, remove what the release
added, then verify the restored version.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from tasks.analysis.base import MetricProvider
from tasks.analysis.decision import Decision, Verdict
from tasks.analysis.runner import AnalysisResult
from tasks.errors import FerrymanError
from tasks.releases import Outcome
from tasks.routers import Router
from tasks.spec import ReleaseSpec
from tasks.steps import RETRIED, Clock, run_logger, unmark, verify
from tasks.strategies.base import Release, StepRunner, call_task, passed
from tasks.targets import Role, Target, TargetStatus, Version


@dataclass(frozen=True)
class Ending:
    """How a release ended, in words, and the analysis of the restored version (if any)."""

    outcome: Outcome
    reason: str
    restored: AnalysisResult | None = None


def put_back(target: Target, router: Router, to: Version | None) -> None:
    """Leave only `to` serving, on the stable workload at full size (nothing at all when
    `to` is None: a first install that failed). Quickest first: a canary is removed before
    anything else, and the app's address leaves a preview only once the stable serves."""
    say = run_logger().info
    if to is None:
        for role in (Role.CANARY, Role.PREVIEW, Role.STABLE):
            router.clean_up(role, say)
            target.remove(role, say)
        return
    status = target.status()
    if status.workload(Role.CANARY) is not None:
        router.clean_up(Role.CANARY, say)
        target.remove(Role.CANARY, say)
    if status.current != to:
        target.restore(to, say)
    stable = target.status().workload(Role.STABLE)
    preview = status.workload(Role.PREVIEW)
    if preview is not None or (stable is not None and stable.desired < target.replicas):
        router.switch(Role.STABLE, say)
    if preview is not None:
        router.clean_up(Role.PREVIEW, say)
        target.remove(Role.PREVIEW, say)


def _roll_back_name() -> str:
    """The run name of `roll back`: a first install that failed has nothing to go back to."""
    from prefect.runtime import task_run

    to = task_run.parameters.get("to")
    return f"roll back to {to.version}" if to is not None else "roll back: remove the new version"


@task(name="roll back", task_run_name=_roll_back_name, **RETRIED)
def roll_back(target: Target, router: Router, to: Version | None) -> None:
    """Put the stable version back (see `put_back`) and wait until only it serves."""
    put_back(target, router, to)


def describe(status: TargetStatus) -> str:
    """What runs now, in words, for a record whose restore failed."""
    if not status.exists:
        return "no stable workload"
    parts = [f"stable workload on {status.current.version if status.current else '?'} "
             f"({status.running_replicas}/{status.desired_replicas})"]
    parts += [f"{w.role.value} on {w.version.version if w.version else '?'} "
              f"({w.ready}/{w.desired})" for w in status.workloads if w.role is not Role.STABLE]
    return ", ".join(parts)


def restore_and_verify(release: Release, why: Decision) -> Ending:
    """Go back to the release's stable version and judge it again.

    ROLLED_BACK when it is back and verified (or could not be measured: Prometheus down
    says nothing against it); FAILED, naming what runs now, when the restore itself failed
    or the restored version did not verify.
    """
    target, to = release.target, release.stable
    try:
        release.step(roll_back, target, release.router, to)
    except FerrymanError as e:
        try:
            now = describe(target.status())
        except FerrymanError as unreadable:
            now = f"unknown ({unreadable})"
        return Ending(Outcome.FAILED,
                      f"{why.reason}; the restore failed: {e}; running now: {now}")
    if to is None:
        return Ending(Outcome.ROLLED_BACK,
                      f"{why.reason}; removed the new version: there was no earlier version")
    check = release.step(verify, release.spec, to, None, release.provider, "restored", None,
                         None, release.clock)
    release.step(unmark, target)
    if passed(check.decision):
        return Ending(Outcome.ROLLED_BACK, f"{why.reason}; {to.version} restored and verified",
                      check)
    if check.decision.unmeasured:
        return Ending(Outcome.ROLLED_BACK,
                      f"{why.reason}; {to.version} restored, but could not verify it: "
                      f"{check.decision.reason}", check)
    return Ending(Outcome.FAILED,
                  f"{why.reason}; {to.version} restored but it did not verify: "
                  f"{check.decision.reason}", check)


def nobody(question, approval) -> Decision:
    """The `person` of a recovery or a rollback: nobody is asked, nothing is promoted."""
    return Decision(Verdict.ROLLBACK, "nobody to ask")


def restore_app(spec: ReleaseSpec, target: Target, router: Router, new: Version | None,
                to: Version | None, why: str, step: StepRunner = call_task,
                provider: MetricProvider | None = None, clock: Clock | None = None) -> Ending:
    """Put `to` back in place of `new` and verify it, with nobody to ask: what a recovery and
    a rollback outside a release share. `step`, `provider` and `clock` are the Release's
    (Prefect task runs, the spec's provider, real time unless given)."""
    release = Release(spec=spec, target=target, router=router, new=new, stable=to,
                      person=nobody, step=step, provider=provider, clock=clock or Clock())
    return restore_and_verify(release, Decision(Verdict.ROLLBACK, why))
