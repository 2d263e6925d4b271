"""Stopping a running release: `ferryman abort` (or Cancel in the Prefect UI) asks, and the
release looks between its steps and restores the stable version (`tasks.strategies`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from flows.tags import abort_tags, aborted_by

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
        who = aborted_by(run.tags)
        if who is not None:
            last["why"] = f"by {who} with ferryman abort"
        elif run.state is not None and run.state.type is StateType.CANCELLING:
            last["why"] = "cancelled in the Prefect UI or API"
        return last["why"]

    return check


def request_abort(run_id: UUID, by: str) -> None:
    """Ask a running release to stop and restore the stable version (`ferryman abort`)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        client.update_flow_run(run_id, tags=sorted(set(run.tags) | abort_tags(by)))
