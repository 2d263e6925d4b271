"""From `docker push` to a release run: how long the trigger path takes, on the local stack.

Pushes PUSHES new tags of the demo app one after another with plain `docker push` (each one
waits for the previous release to finish) and prints, per push and as medians: the time
from the push returning to the release run being created (registry notification ->
receiver -> event -> deployment trigger) and to its starting in the worker, and the whole
release (push returned -> promoted; includes `tag_policy.settle`). Run with
`make bench-triggers` (brings the stack up first).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

# Before Prefect is imported: its settings are read once, at import.
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")

import docker  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowFilter, FlowFilterName  # noqa: E402
from prefect.client.schemas.sorting import FlowRunSort  # noqa: E402

from bench.common import docker_login, save  # noqa: E402
from devstack.settings import REGISTRY  # noqa: E402
from flows import ROOT  # noqa: E402

PUSHES = int(os.environ.get("PUSHES", "5"))


def push(version: str) -> float:
    image = f"{REGISTRY}/ferryman/demo:{version}"
    docker.from_env().images.build(path=str(ROOT / "examples" / "demo-app"), tag=image,
                                   buildargs={"APP": "demo", "VERSION": version}, rm=True)
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    return time.time()


def run_of(version: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["release"])),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=20,
            ):
                if (run.parameters or {}).get("version") == version:
                    return run
            time.sleep(0.2)
    sys.exit(f"no release run for {version} within {timeout:.0f} s: is the stack up?")


def watch(run_id, until, timeout: float = 600):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if until(run):
                return run
            time.sleep(0.2)
    sys.exit(f"flow run {run_id} did not get there within {timeout:.0f} s")


def main() -> None:
    docker_login()
    major = int(time.time()) // 60
    rows = []
    print(f"{'version':<16} {'created s':>9} {'started s':>9} {'1st task s':>10} "
          f"{'released s':>10}  outcome")
    for i in range(PUSHES):
        version = f"{major}.{100 + i}.0"
        pushed = push(version)
        run = run_of(version)
        started = watch(run.id, lambda r: r.start_time is not None)
        done = watch(run.id, lambda r: r.state is not None and r.state.is_final())
        row = (run.created.timestamp() - pushed, started.start_time.timestamp() - pushed,
               first_task(run.id) - pushed, done.end_time.timestamp() - pushed)
        rows.append(row)
        print(f"{version:<16} {row[0]:>9.1f} {row[1]:>9.1f} {row[2]:>10.1f} {row[3]:>10.1f}"
              f"  {done.state.name}")
    created, started, task, released = (statistics.median(c) for c in zip(*rows, strict=True))
    print(f"median over {PUSHES} pushes: run created {created:.1f} s, run started "
          f"{started:.1f} s, first task running {task:.1f} s, released {released:.1f} s after "
          "`docker push` returned")
    save("trigger_latency", {"pushes": PUSHES, "rows": [
        dict(zip(("created_s", "started_s", "first_task_s", "released_s"), r, strict=True))
        for r in rows]})


def first_task(run_id) -> float:
    """When the run's first task run started (Unix seconds)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)
    return min(t.start_time.timestamp() for t in tasks if t.start_time is not None)


if __name__ == "__main__":
    main()
