"""What every deploy target offers the strategies, and the values it answers with.

A target runs an app's workloads, one per role (Flagger's `canary.Controller`): the stable
one users get, and beside it, during a release, a canary on the app's address or a preview
on an address of its own. It knows nothing of strategies; which share of the traffic a
workload gets is the router's business (`tasks/routers/`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    """What a workload is for during a release."""

    STABLE = "stable"
    """The app's own workload: what users get, and what a promotion moves to the new version."""
    CANARY = "canary"
    """The new version beside the stable one, on the app's address, sized by the router."""
    PREVIEW = "preview"
    """The new version on a preview address only, until the router switches the app to it."""


@dataclass(frozen=True)
class Version:
    """One deployable version of an app: its name and the image reference (by digest)."""

    version: str
    image: str


@dataclass(frozen=True)
class InFlight:
    """The mark a release leaves on the stable workload while it may change the app.

    Recovery reads it: a release whose run is no longer alive left the app unjudged, and
    the app is restored to its stable version.
    """

    run_id: str
    version: str
    started: str
    """ISO 8601, UTC."""


@dataclass(frozen=True)
class Workload:
    """One role's workload as the platform runs it now."""

    role: Role
    version: Version | None
    desired: int
    ready: int
    """Replicas running `version` and serving."""
    on_app_address: bool
    """Whether it answers on the app's own address (the stable one, a canary, a switched
    preview), i.e. whether users get it."""


@dataclass(frozen=True)
class TargetStatus:
    """What a target runs for an app, as recorded on the stable workload itself.

    `current` is what the stable workload is set to run now; `stable` is the last version
    promoted (the one a rollback restores); `previous` is what ran before the last release
    started. `workloads` holds every role that exists now, the stable one included.
    """

    exists: bool
    current: Version | None = None
    stable: Version | None = None
    previous: Version | None = None
    desired_replicas: int = 0
    running_replicas: int = 0
    update_state: str | None = None
    in_flight: InFlight | None = None
    workloads: tuple[Workload, ...] = field(default=())

    def restore_point(self) -> Version | None:
        """The version a failed release goes back to: the stable one, else what ran before."""
        return self.stable or self.previous

    def workload(self, role: Role) -> Workload | None:
        return next((w for w in self.workloads if w.role is role), None)

    def unjudged(self) -> bool:
        """Whether anything but the stable version may be serving or about to: a release's
        workload beside the stable one, a stable workload off its stable version, or a
        release's mark."""
        stable = self.restore_point()
        return (
            self.in_flight is not None
            or any(w.role is not Role.STABLE for w in self.workloads)
            or (stable is not None and self.current is not None and self.current != stable)
        )


Progress = Callable[[str], None]
"""Where a long step reports one human-readable line at a time (a run's logger, print)."""


def follow(look: Callable[[], tuple[bool, str]], progress: Progress, poll_seconds: float) -> None:
    """Call `look` every `poll_seconds` until it says done; report each new line it gives
    (and the last one). What `look` raises (DeployFailed) ends the wait."""
    last = ""
    while True:
        done, line = look()
        if done or line != last:
            progress(line)
            last = line
        if done:
            return
        time.sleep(poll_seconds)


class Target(Protocol):
    """A platform that runs an app's workloads (Swarm services, Kubernetes Deployments).

    Every method that changes a workload waits until the platform has converged, or raises
    `DeployFailed` (the new version cannot run) or a `TargetError`/`TargetUnavailableError`.
    """

    replicas: int
    """The stable workload's size, from the app's orchestration files."""

    def status(self) -> TargetStatus:
        """Read every role's workload and what the stable one records."""
        ...

    def mark(self, in_flight: InFlight, restore_point: Version | None) -> None:
        """Record, on the stable workload and before anything changes, that a release is
        under way and what it restores; changes nothing that runs."""
        ...

    def run(
        self, role: Role, version: Version, replicas: int, progress: Progress,
        wait: bool = True,
    ) -> None:
        """Create the role's workload or move it to `version` with `replicas`.

        The stable workload moves with the platform's rolling update (its restore point is
        recorded in the same call); `wait=False` returns once the platform took the change,
        for `watch` to follow.
        """
        ...

    def watch(self, role: Role, version: Version) -> Workload:
        """One look at a role moving to `version`: its workload, or DeployFailed when the
        platform gave up, the new replicas crash-loop, or the deploy timeout passed."""
        ...

    def wait(self, role: Role, version: Version, progress: Progress, ready: int = 0) -> None:
        """Wait until `ready` replicas (0: all of them) of the role run `version`."""
        ...

    def restore(self, to: Version, progress: Progress) -> None:
        """Put the stable workload back on `to`, all replicas at once, and wait."""
        ...

    def scale(self, role: Role, replicas: int, progress: Progress) -> None:
        """Set a role's replica count and wait for it."""
        ...

    def remove(self, role: Role, progress: Progress) -> None:
        """Remove a role's workload (the stable one only when there is nothing to restore)."""
        ...

    def unmark(self, stable: Version | None) -> None:
        """Clear the release's mark; with `stable`, record it as the stable version."""
        ...
