"""The app's lock on the stack's real Prefect server: a slot the server forgot is freed by the
next run that waits for it, a slot a live run holds never is.

A Prefect server keeps its leases in memory: restarted while a run held an app's slot, it
forgets the lease and goes on counting the slot. The tests make that state directly (the
slot counted, no lease) on a limit of their own.
"""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.states import Completed, Running

from flows import locks
from flows.liveness import bury_dead_holders
from flows.locks import app_lock, limit_name
from flows.tags import LEASE_TAG

pytestmark = pytest.mark.stack


@pytest.fixture
def app() -> str:
    """A new app's limit, its one slot counted with no lease: what a restarted server leaves."""
    name = f"lock-test-{uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=limit_name(name), limit=1))
        client.update_global_concurrency_limit(
            limit_name(name), GlobalConcurrencyLimitUpdate(active_slots=1))
    yield name
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(limit_name(name))


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look for dead holders often, and call a slot orphaned as soon as nobody holds it."""
    monkeypatch.setattr(locks, "LOOK_FOR_DEAD_EVERY", 0.2)
    monkeypatch.setattr(locks, "ORPHANED_AFTER", 0.0)


def slots(app: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(limit_name(app)).active_slots


def test_a_slot_the_server_forgot_is_freed_by_the_next_run(app, quick):
    with app_lock(app, wait=30):
        assert slots(app) == 1  # freed, then taken by this run
    assert slots(app) == 0


def test_a_forgotten_slot_is_left_while_it_may_still_have_a_lease(app, monkeypatch):
    monkeypatch.setattr(locks, "LOOK_FOR_DEAD_EVERY", 0.2)  # ORPHANED_AFTER as shipped
    with pytest.raises(TimeoutError, match=limit_name(app)), app_lock(app, wait=3):
        pass
    assert slots(app) == 1


@flow(name="lock-holder")
def lock_holder() -> None:
    """Never run: the flow of the stand-in holder's run below."""


def test_a_slot_a_live_run_holds_is_never_freed(app, quick):
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(
            limit_name(app), GlobalConcurrencyLimitUpdate(active_slots=0))
        lease = client.increment_concurrency_slots_with_lease(
            [limit_name(app)], 1, "concurrency", 60).json()["lease_id"]
        holder = client.create_flow_run(lock_holder, tags=[f"app:{app}", f"{LEASE_TAG}{lease}"],
                                        state=Running())
    try:
        # Also with the release flows' own rule for dead holders: a live run is not one.
        with pytest.raises(TimeoutError, match=limit_name(app)), app_lock(
                app, wait=3, clear_dead=bury_dead_holders):
            pass
        assert slots(app) == 1
    finally:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease)
            client.set_flow_run_state(holder.id, Completed(), force=True)
