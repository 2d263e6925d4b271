"""Blue-green: the new version beside the old on a preview address, then the switch.

    app address     -> stable v1 x N                       preview address -> preview v2 x N
    preview analysis (only the preview's own traffic reaches v2)  [-> approve]
    switch:  app address -> preview v2          post-switch analysis; the old stays ready
             a failure switches straight back to v1
    after scale_down_delay: stable rolls to v2, the app address goes back to it, the
             preview goes
"""

from __future__ import annotations

from tasks import steps
from tasks.analysis.decision import Decision, Verdict
from tasks.steps import deploy, prepare, retire, switch
from tasks.strategies.base import Release, passed
from tasks.targets import Role


def run(release: Release) -> Decision:
    target, new = release.target, release.new
    strategy = release.spec.strategy
    release.step(deploy, target, Role.PREVIEW, new, target.replicas)
    release.step(prepare, release.router, Role.PREVIEW)
    if strategy.preview_analysis:
        decision = release.analyse("preview")
        if not passed(decision):
            return _before_switch(decision)
    if strategy.approve_switch:
        decision = release.ask(f"switch {release.spec.app} to {new.version}?",
                               _approval(release))
        if not passed(decision):
            return _before_switch(decision)
    release.checkpoint()
    release.step(switch, release.router, Role.PREVIEW)
    switched = release.clock.monotonic()
    if strategy.post_switch_analysis:
        decision = release.analyse("switched")
        if not passed(decision):
            return Decision(decision.verdict, f"after the switch: {decision.reason}",
                            decision.unmeasured)
    left = strategy.scale_down_delay - (release.clock.monotonic() - switched)
    if left > 0:
        release.wait(left, f"kept the old version for {strategy.scale_down_delay:g} s "
                           "after the switch")
    return Decision(Verdict.PROMOTE, "the new version passed "
                    + " and ".join(a.step for a in release.analyses) + " analysis")


def _approval(release: Release):
    from tasks.spec import Approval

    return Approval(timeout=release.spec.analysis.pause_timeout)


def _before_switch(decision: Decision) -> Decision:
    return Decision(decision.verdict, f"before the switch (no user got it): {decision.reason}",
                    decision.unmeasured)


def promote(release: Release) -> None:
    target = release.target
    release.step(deploy, target, Role.STABLE, release.new, target.replicas)
    release.step(switch, release.router, Role.STABLE)
    release.step(retire, target, release.router, Role.PREVIEW)
    release.step(steps.promote, target, release.new)
