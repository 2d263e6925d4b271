"""Canary: a share of the app's traffic on the new version, raised step by step.

    app address -> stable v1 x N  +  canary v2 x c      (share c / (N + c), by replicas)
    steps:  weight 25 -> analysis -> weight 50 -> analysis [-> approve] -> promotion
    promotion: stable rolls to v2, then the canary goes
    rollback:  the canary goes (the stable never changed)

A failure at any step rolls back at once: users only ever got the canary's share.
"""

from __future__ import annotations

from tasks import steps
from tasks.analysis.decision import Decision, Verdict
from tasks.spec import AnalysisStep, ApproveStep, PauseStep, WeightStep
from tasks.steps import deploy, retire, set_weight
from tasks.strategies.base import Release, passed
from tasks.targets import Role


def run(release: Release) -> Decision:
    target, router, new = release.target, release.router, release.new
    steps = release.spec.strategy.steps
    release.step(deploy, target, Role.CANARY, new, 0)
    weight = 0
    for number, step in enumerate(steps, start=1):
        release.checkpoint()
        if isinstance(step, WeightStep):
            weight = step.weight
            got = release.step(set_weight, router, weight)
            release.notes.append(f"step {number}: canary at {got:.0f}% (asked {weight}%)")
        elif isinstance(step, AnalysisStep):
            decision = release.analyse(f"canary-{weight}", step.analysis)
            if not passed(decision):
                return _at_step(number, weight, decision)
        elif isinstance(step, ApproveStep):
            decision = release.ask(f"canary at {weight}%: promote {new.version}?", step.approve)
            if not passed(decision):
                return _at_step(number, weight, decision)
        elif isinstance(step, PauseStep):
            release.wait(step.pause.duration,
                         f"step {number}: held {weight}% for {step.pause.duration:g} s")
    return Decision(Verdict.PROMOTE, f"every one of the {len(steps)} canary steps passed")


def _at_step(number: int, weight: int, decision: Decision) -> Decision:
    return Decision(decision.verdict, f"step {number} (canary at {weight}%): {decision.reason}",
                    decision.unmeasured)


def promote(release: Release) -> None:
    target = release.target
    release.step(deploy, target, Role.STABLE, release.new, target.replicas)
    release.step(retire, target, release.router, Role.CANARY)
    release.step(steps.promote, target, release.new)
