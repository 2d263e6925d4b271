"""One release per app at a time: a Prefect global concurrency limit of 1 per app.

The release and rollback flows hold the app's slot from before they read what runs until
they have published their outcome, so a second run for the same app waits and then starts
from what the first one left. The limit lives on the Prefect server, so the rule holds
across processes, workers and machines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

LEASE_SECONDS = 300
"""Renewed while the flow runs; a crashed run's slot frees itself after this long."""


def limit_name(app: str) -> str:
    return f"ferryman-app-{app}"


@contextmanager
def app_lock(app: str) -> Iterator[None]:
    """Hold the app's release slot; waits (and says so) while another run holds it."""
    name = limit_name(app)
    with get_client(sync_client=True) as client:
        # `concurrency` does not block on a limit that does not exist; another run may
        # create it at the same moment.
        with suppress(ObjectAlreadyExists):
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
        limit = client.read_global_concurrency_limit_by_name(name)
    if limit.active_slots >= limit.limit:
        get_run_logger().info("waiting for the release of %s in progress to finish", app)
    with concurrency(name, occupy=1, lease_duration=LEASE_SECONDS, strict=True):
        yield
