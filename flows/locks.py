"""One release per app at a time: a Prefect global concurrency limit of 1 per app.

The release, rollback and recover flows hold the app's slot from before they read what runs
until they have published their outcome, so a second run for the same app waits and then
starts from what the first one left. The limit lives on the Prefect server, so the rule holds
across processes, workers and machines.

The slot is a lease, renewed by a thread while the run lives. Its id goes on the holding run
as a tag (`lease:<id>`): a run whose process died holds the slot only until recovery sees it
dead and frees it (`free_lease`), not for the lease's whole length.

The Prefect server keeps leases in memory (its default lease storage): restarted while a run
held the slot, it forgets the lease but goes on counting the slot, for good. A run waiting
for the slot frees such an orphan (`_free_orphaned_slot`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError

from flows.tags import app_tag, lease_of, lease_tag, process_tag
from tasks.steps import run_logger

LEASE_SECONDS = 300
"""How long the slot outlives its holder's last renewal: long enough to ride out a Prefect
API that stops answering for minutes, since a dead holder's slot is freed by recovery."""
RENEW_EVERY = 20.0
LOOK_FOR_DEAD_EVERY = 15.0
"""While waiting for the slot: how often to look whether its holder died."""
ORPHANED_AFTER = float(LEASE_SECONDS)
"""A taken slot that has not moved for this long while no live run carries a lease of it is
an orphan: any lease the server still knew would have run out by then."""


def limit_name(app: str) -> str:
    return f"ferryman-app-{app}"


def free_lease(lease_id: UUID) -> None:
    """Give back the slot of a dead run's lease (a lease already gone is no error)."""
    with get_client(sync_client=True) as client, suppress(ObjectNotFound):
        client.release_concurrency_slots_with_lease(lease_id)


def _acquire(client, name: str, holder, wait: float | None,
             clear_dead: Callable[[str], None] | None) -> UUID:
    log = run_logger()
    deadline = None if wait is None else time.monotonic() + wait
    said = False
    next_look = time.monotonic() + LOOK_FOR_DEAD_EVERY
    while True:
        try:
            response = client.increment_concurrency_slots_with_lease(
                [name], 1, "concurrency", LEASE_SECONDS, holder
            )
            return UUID(response.json()["lease_id"])
        except PrefectHTTPStatusError as e:
            if e.response.status_code != 423:  # 423 Locked: another run holds the slot
                raise
            retry_after = float(e.response.headers.get("Retry-After") or 1)
        if deadline is not None and time.monotonic() + retry_after > deadline:
            raise TimeoutError(f"{name} is held by another run")
        app = name.removeprefix("ferryman-app-")
        if not said:
            log.info("waiting for the release of %s in progress to finish", app)
            said = True
        if time.monotonic() >= next_look:
            # A holder whose process died would hold the slot until its lease runs out.
            if clear_dead is not None:
                clear_dead(app)
            _free_orphaned_slot(client, name, app)
            next_look = time.monotonic() + LOOK_FOR_DEAD_EVERY
        time.sleep(min(max(retry_after, 0.5), 5.0))


def _free_orphaned_slot(client, name: str, app: str) -> None:
    """Free the app's slot when it is taken, has not moved for ORPHANED_AFTER seconds, and
    no run that is still alive or waiting carries a lease of the app: the server lost the
    lease (restarted), so the slot would stay taken for good. A live holder is never freed:
    it tags itself with its lease right after taking the slot."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    limit = client.read_global_concurrency_limit_by_name(name)
    if limit.active_slots < limit.limit or limit.updated is None:
        return
    still = (datetime.now(UTC) - limit.updated).total_seconds()
    if still < ORPHANED_AFTER:
        return
    context = FlowRunContext.get()
    me = context.flow_run.id if context else None
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        tags=FlowRunFilterTags(all_=[app_tag(app)]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[
            StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING, StateType.PENDING]))),
        limit=50)
    holders = [r.name for r in runs if r.id != me and lease_of(r.tags) is not None]
    if holders:
        return
    run_logger().warning("%s's lock has been taken for %.0f s by no live run (the Prefect "
                         "server lost its lease, as when it restarts): freeing it", app, still)
    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))


def _keep(lease_id: UUID, stop: threading.Event) -> None:
    """Renew the lease until stopped; an API that does not answer is tried again next time
    (the lease outlasts many missed renewals)."""
    while not stop.wait(RENEW_EVERY):
        try:
            with get_client(sync_client=True) as client:
                client.renew_concurrency_lease(lease_id, LEASE_SECONDS)
        except Exception as e:  # noqa: BLE001 (logged; the next tick tries again)
            run_logger().warning("could not renew the app's lock (%s); trying again", e)


@contextmanager
def app_lock(app: str, wait: float | None = None,
             clear_dead: Callable[[str], None] | None = None) -> Iterator[UUID]:
    """Hold the app's release slot; waits (and says so) while another run holds it.

    `wait`: give up with TimeoutError after this many seconds (None: wait as long as it
    takes). `clear_dead(app)`, called every LOOK_FOR_DEAD_EVERY seconds of waiting, frees the
    slot of a holder that died (`flows.liveness.bury_dead_holders`; the lock itself does not
    judge who is alive). Yields the lease's id.
    """
    name = limit_name(app)
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    holder = ConcurrencyLeaseHolder(type="flow_run", id=run.id) if run else None
    with get_client(sync_client=True) as client:
        # Acquiring from a limit that does not exist would not block; another run may
        # create it at the same moment.
        with suppress(ObjectAlreadyExists):
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
        lease_id = _acquire(client, name, holder, wait, clear_dead)
        if run is not None:
            tags = set(client.read_flow_run(run.id).tags)
            client.update_flow_run(run.id, tags=sorted(tags | {lease_tag(lease_id),
                                                               process_tag()}))
    stop = threading.Event()
    keeper = threading.Thread(target=_keep, args=(lease_id, stop), daemon=True,
                              name=f"lease {name}")
    keeper.start()
    try:
        yield lease_id
    finally:
        stop.set()
        try:
            free_lease(lease_id)
        except Exception as e:  # noqa: BLE001 (the lease runs out by itself)
            run_logger().warning("could not give back the app's lock (%s); it frees itself "
                                 "within %d s", e, LEASE_SECONDS)
