"""Whether a release run is still alive, and burying the dead ones.

A run is dead when Prefect says it ended, when the process its tag names on this host is gone,
or when it sent no heartbeat for `SILENT_FOR` seconds. A dead run is marked Crashed and the
app's lock it held is freed, so that recovery and the next release can go on.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.states import Crashed

from flows.locks import LEASE_SECONDS, free_lease
from flows.tags import app_tag, lease_of, processes_of
from tasks.steps import run_logger

SILENT_FOR = 90.0
"""A release run that sent no heartbeat for this long is dead (it sends one every
`HEARTBEAT_SECONDS`; see `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`)."""
HEARTBEAT_SECONDS = 30


def process_gone(tags: list[str]) -> str | None:
    """Why a run whose tags name a process on this host is dead (that process is gone), or
    None when no tag says so."""
    for host, pid in processes_of(tags):
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return f"its process {pid} on {host} is gone"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def why_dead(run_id: UUID | str) -> str | None:
    """Why a release run is no longer alive (ended, its process gone, silent), or None while
    it may still be working. An API that does not answer says nothing either way: None."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )
    from prefect.exceptions import ObjectNotFound

    try:
        run_id = UUID(str(run_id))
    except ValueError:
        return f"{run_id!r} is not a flow run id"
    try:
        with get_client(sync_client=True) as client:
            try:
                run = client.read_flow_run(run_id)
            except ObjectNotFound:
                return "no such run on the Prefect server"
            if run.state is not None and run.state.is_final():
                return f"it ended {run.state.name}"
            gone = process_gone(run.tags)
            if gone:
                return gone
            since = datetime.now(UTC) - timedelta(seconds=SILENT_FOR)
            if run.start_time is None or run.start_time > since:
                return None  # too young to have missed heartbeats
            beats = client.read_events(filter=EventFilter(
                occurred=EventOccurredFilter(since=since),
                event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            ), limit=1).events
    except Exception:  # noqa: BLE001 (no answer is no proof of death)
        return None
    return None if beats else f"no heartbeat for {SILENT_FOR:.0f} s"


def bury(run_id: UUID | str, why: str, app: str) -> None:
    """A dead release run: mark it Crashed (so that the UI and the triggers stop counting it
    as alive) and free the app's lock it held."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
        lease = lease_of(run.tags)
        if lease is not None:
            free_lease(lease)
    except Exception as e:  # noqa: BLE001 (recovery goes on; the lease runs out by itself)
        run_logger().warning("could not free the lock of the dead run %s: %s", run_id, e)
    crash(run_id, f"{why}; {app} is being restored by recovery")


def crash(run_id: UUID | str, message: str) -> None:
    """Mark a release run that died while Running (or Paused) as Crashed, so that the UI and
    the triggers' newer-request check stop counting it as alive."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(str(run_id)))
            if run.state is not None and not run.state.is_final():
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    except Exception as e:  # noqa: BLE001 (an unknown id, the API away: recovery goes on)
        run_logger().warning("could not mark run %s crashed: %s", run_id, e)


LOCK_HOLDING_FLOWS = ["release", "rollback", "recover"]
"""The flows that hold an app's lock while they change it."""


def dead_releases(app: str) -> list[tuple[FlowRun, str]]:
    """The runs of `app` that died while they may have held its lock (releases, rollbacks,
    recoveries): the ones Prefect still counts as running or waiting whose process is gone,
    and the ones marked Crashed (whose hold on the app's lock outlives them until it is
    freed), with why they are dead."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )

    def runs(states: list[StateType], **conditions) -> list[FlowRun]:
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=LOCK_HOLDING_FLOWS)),
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[app_tag(app)]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
                    **conditions,
                ),
                limit=50,
            )

    recently = FlowRunFilterEndTime(after_=datetime.now(UTC) - timedelta(seconds=LEASE_SECONDS))
    candidates = runs([StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING])
    candidates += runs([StateType.CRASHED], end_time=recently)
    me = FlowRunContext.get()
    found = []
    for run in candidates:
        if me is not None and run.id == me.flow_run.id:
            continue
        why = why_dead(run.id)
        if why is not None:
            found.append((run, why))
    return found


def bury_dead_holders(app: str) -> None:
    """Free the app's lock from runs that died holding it: what `app_lock` is given to
    do while it waits (`clear_dead`)."""
    for run, why in dead_releases(app):
        run_logger().warning("the release run %s holding %s's lock is dead (%s): freeing it",
                             run.name, app, why)
        bury(run.id, why, app)
