"""What every deploy target offers the release flow, and the values it answers with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Version:
    """One deployable version of an app: its name and the image reference (by digest)."""

    version: str
    image: str


@dataclass(frozen=True)
class TargetStatus:
    """What a target runs for an app, as recorded on the workload itself.

    `current` is what the workload is set to run now; `stable` is the last version promoted
    (the one a rollback restores); `previous` is what ran before the last release started.
    """

    exists: bool
    current: Version | None = None
    stable: Version | None = None
    previous: Version | None = None
    desired_replicas: int = 0
    running_replicas: int = 0
    update_state: str | None = None

    def restore_point(self) -> Version | None:
        """The version a failed release goes back to: the stable one, else what ran before."""
        return self.stable or self.previous


Progress = Callable[[str], None]
"""A callback for one human-readable progress line during a long step."""


class Target(Protocol):
    """A platform that runs an app's workload (a Swarm service, a Kubernetes Deployment).

    The release flow calls `status` first, then `deploy`; then `promote` or `rollback`.
    Every method that changes the workload waits until the platform has converged or raises
    `DeployFailed`.
    """

    def status(self) -> TargetStatus:
        """Read what runs now and what is recorded as stable and previous."""
        ...

    def deploy(self, new: Version, restore_point: Version | None, progress: Progress) -> None:
        """Move the workload to `new`, recording `restore_point` on it before anything changes."""
        ...

    def promote(self, new: Version) -> None:
        """Mark `new` as the stable version."""
        ...

    def rollback(self, to: Version | None, progress: Progress) -> None:
        """Bring back `to` (or remove the workload when there is nothing to go back to)."""
        ...
