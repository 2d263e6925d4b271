"""Every tag Ferryman puts on a flow run, built here and read here: the UI filters on them,
the triggers and recovery find runs by them, and one spelling in one place keeps them agreeing.
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from uuid import UUID

APP_TAG = "app:"
LEASE_TAG = "lease:"
PROCESS_TAG = "process:"
ABORT_TAG = "abort-requested"
"""The tag `ferryman abort` puts on a running release; `aborted-by:<who>` beside it."""
ABORTED_BY = "aborted-by:"


def app_tag(app: str) -> str:
    """`app:<app>`: every run that releases, rolls back or recovers `app` carries it."""
    return f"{APP_TAG}{app}"


def app_of_tags(tags: list[str]) -> str | None:
    """The app a run's tags name, or None."""
    return next((t.removeprefix(APP_TAG) for t in tags if t.startswith(APP_TAG)), None)


def label_tags(app: str, target: str, strategy: str, trigger: str) -> set[str]:
    """The tags a release, rollback or recovery run is labelled with for the UI's filters."""
    return {app_tag(app), f"target:{target}", f"strategy:{strategy}", f"trigger:{trigger}"}


def lease_tag(lease_id: UUID) -> str:
    """`lease:<id>`: the app's lock a run holds (see `flows.locks.app_lock`)."""
    return f"{LEASE_TAG}{lease_id}"


def lease_of(tags: list[str]) -> UUID | None:
    """The lease a release run holds, from its tags (see `flows.locks.app_lock`)."""
    for tag in tags:
        if tag.startswith(LEASE_TAG):
            with suppress(ValueError):
                return UUID(tag.removeprefix(LEASE_TAG))
    return None


def process_tag() -> str:
    """`process:<host>:<pid>` of this process: where a release runs, so that a recovery on
    the same host can tell at once that it died."""
    return f"{PROCESS_TAG}{socket.gethostname()}:{os.getpid()}"


def processes_of(tags: list[str]) -> list[tuple[str, str]]:
    """The (host, pid) pairs of a run's process tags."""
    found = []
    for tag in tags:
        if tag.startswith(PROCESS_TAG):
            host, _, pid = tag.removeprefix(PROCESS_TAG).rpartition(":")
            found.append((host, pid))
    return found


def abort_tags(by: str) -> set[str]:
    """What `ferryman abort` adds to a running release."""
    return {ABORT_TAG, f"{ABORTED_BY}{by}"}


def aborted_by(tags: list[str]) -> str | None:
    """Who asked a run to abort (`someone` when it does not say), or None."""
    if ABORT_TAG not in tags:
        return None
    who = [t.removeprefix(ABORTED_BY) for t in tags if t.startswith(ABORTED_BY)]
    return who[0] if who else "someone"


def digest_tag(digest: str) -> str:
    """The flow-run tag that records which image a release ran (short, readable in the UI)."""
    return f"digest:{digest.removeprefix('sha256:')[:12]}"


def version_tag(version: str) -> str:
    """The flow-run tag that records which version a release ran: what tells a Docker Hub
    push (no digest) of a version released before, e.g. rolled back, from a new one."""
    return f"version:{version}"
