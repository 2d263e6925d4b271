"""Many apps released at once: N demo apps (each its own Swarm service and spec), one push
of each, with the worker running at most 4 releases at a time.

For N = 5, 10, 20 (BENCH_APPS): the wall time from the first push to the last release
ended, the peak memory of the worker (with the release processes it starts) and of the
Prefect server, and how the wall time grows with N. The apps are first installs of a
small service (1 replica), released by their pushes through the webhook receiver and the
`release/on-push` trigger, as in production; they are removed afterwards.

    make bench-many
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench.common import ROOT, RUN, docker_login, median, save, table

# Before Prefect is imported: its settings are read once, at import.
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")

SIZES = [int(n) for n in os.environ.get("BENCH_APPS", "5,10,20").split(",")]
CONCURRENCY = 4
SPECS = ROOT / "deployments"
DEMO = SPECS / "demo"


def write_app(name: str) -> None:
    folder = SPECS / name
    folder.mkdir(exist_ok=True)
    stack = yaml.safe_load((DEMO / "stack.yml").read_text())
    service = stack["services"].pop("demo")
    service["environment"]["APP"] = name
    service["deploy"]["replicas"] = 1
    stack["services"] = {name: service}
    (folder / "stack.yml").write_text(yaml.safe_dump(stack, sort_keys=False))
    spec = yaml.safe_load((DEMO / "release.yaml").read_text())
    spec["app"] = name
    spec["image"]["repository"] = f"ferryman/{name}"
    spec["image"]["build_args"] = {"APP": name}
    spec["target"]["service"] = name
    spec["tag_policy"] = {"semver": ">=1.0.0", "settle": "2s"}
    # The demo spec's initial delay (10 s: Prometheus may see a new replica's first values
    # about 11 s after it started), then a quicker look: every 3 s, 3 times.
    spec["analysis"].update({"interval": "3s", "count": 3})
    (folder / "release.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def push(name: str, version: str) -> None:
    image = f"127.0.0.1:5000/ferryman/{name}:{version}"
    subprocess.run(["docker", "build", "-q", "-t", image, "--build-arg", f"APP={name}",
                    "--build-arg", f"VERSION={version}", str(ROOT / "examples" / "demo-app")],
                   check=True, capture_output=True)
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rss = int(Path(f"/proc/{p}/statm").read_text().split()[1])
        except (OSError, IndexError):
            continue
        total += rss * os.sysconf("SC_PAGE_SIZE")
        todo += children.get(p, [])
    return total


def runs_ended(names: list[str], since: float) -> list:
    """The release runs of these apps that started after `since` and have ended."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    after = datetime.fromtimestamp(since - 5, UTC)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release"])), limit=200,
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=after)))
    return [r for r in runs if (r.parameters or {}).get("app") in names
            and r.state is not None and r.state.is_final()]


def one_size(n: int, record: dict) -> dict:
    names = [f"bench-{RUN}-{n}-{i}" for i in range(n)]  # new apps for every size
    for name in names:
        write_app(name)
    subprocess.run([str(ROOT / ".venv" / "bin" / "ferryman"), "stack", "up"], check=True,
                   capture_output=True)
    peaks = {"worker": 0, "server": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["worker"] = max(peaks["worker"], tree_rss(record["worker_pid"]))
            peaks["server"] = max(peaks["server"], tree_rss(record["prefect_pid"]))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.time()
    try:
        for name in names:
            push(name, "1.0.0")
        pushed = time.time() - start
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            done = runs_ended(names, start)
            if len({r.parameters["app"] for r in done}) >= n:
                break
            time.sleep(2)
        wall = time.time() - start
        outcomes = [r.state.name for r in runs_ended(names, start)]
    finally:
        stop.set()
        sampler.join()
        for name in names:
            subprocess.run(["docker", "service", "rm", name], capture_output=True)
            shutil.rmtree(SPECS / name, ignore_errors=True)
    return {"apps": n, "wall_s": round(wall, 1), "pushes_s": round(pushed, 1),
            "per_app_s": round(wall / n, 1),
            "promoted": sum(o == "Completed" for o in outcomes), "runs": len(outcomes),
            "worker_peak_mb": round(peaks["worker"] / 1024**2),
            "server_peak_mb": round(peaks["server"] / 1024**2)}


def main() -> None:
    from devstack.settings import StackPaths

    record = StackPaths.default().load_record()
    docker_login()
    prefect = str(ROOT / ".venv" / "bin" / "prefect")
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    subprocess.run([prefect, "work-pool", "set-concurrency-limit", "ferryman",
                    str(CONCURRENCY)], check=True, capture_output=True, env=env)
    rows = []
    try:
        for n in SIZES:
            rows.append(one_size(n, record))
            print(table([rows[-1]], list(rows[-1])).splitlines()[-1], flush=True)
    finally:
        subprocess.run([prefect, "work-pool", "clear-concurrency-limit", "ferryman"],
                       capture_output=True, env=env)
        subprocess.run([str(ROOT / ".venv" / "bin" / "ferryman"), "stack", "up"],
                       capture_output=True)
    print()
    print(f"N apps released at once by N pushes, worker concurrency {CONCURRENCY}")
    print(table(rows, list(rows[0])))
    if len(rows) > 1:
        growth = [round(b["wall_s"] / a["wall_s"], 2) for a, b in zip(rows, rows[1:],
                                                                      strict=False)]
        sizes = [round(b["apps"] / a["apps"], 2) for a, b in zip(rows, rows[1:], strict=False)]
        print(f"wall time grows {growth} for N growing {sizes} (linear: the same)")
        print(f"per app: {median([r['per_app_s'] for r in rows])} s (median)")
    path = save("many_apps", {"concurrency": CONCURRENCY, "rows": rows})
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
