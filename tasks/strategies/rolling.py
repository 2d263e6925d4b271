"""Rolling: the platform's own rolling update, judged from the first new replica on.

    stable  v1 v1 v1  ->  v2 v1 v1  ->  v2 v2 v1  ->  v2 v2 v2
                          ^ analysis starts; a failure stops the update and restores v1

The analysis runs while the update goes on (background analysis); a deploy the platform
gives up on stops it at once. Promotion needs both: a passed analysis and every replica on
the new version.
"""

from __future__ import annotations

from tasks import steps
from tasks.analysis.decision import Decision, Verdict
from tasks.errors import DeployFailed
from tasks.steps import deploy, wait
from tasks.strategies.base import Release, passed
from tasks.targets import Role


def run(release: Release) -> Decision:
    target, new = release.target, release.new
    release.step(deploy, target, Role.STABLE, new, target.replicas, wait=False)
    release.step(wait, target, Role.STABLE, new, ready=1)

    def deploy_failed() -> Decision | None:
        try:
            target.watch(Role.STABLE, new)
        except DeployFailed as e:
            return Decision(Verdict.ROLLBACK, f"deploy failed: {e}")
        return None

    decision = release.analyse("rolling", watch=deploy_failed)
    if passed(decision):
        release.step(wait, target, Role.STABLE, new)
    return decision


def promote(release: Release) -> None:
    release.step(steps.promote, release.target, release.new)
