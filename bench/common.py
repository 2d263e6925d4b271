"""What the benchmarks share: releases through the `ferryman` CLI, what users saw (the
traffic generator's counters in Prometheus), medians, and the results file.

Benchmarks run on the local stack (`make bench` brings it up) and print figures; they
assert nothing. Ratios are taken between runs of one invocation, on one machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "deployments" / "demo" / "release.yaml"
K8S_SPEC = ROOT / "deployments" / "demo-k8s" / "release.yaml"
FERRYMAN = str(Path(sys.executable).parent / "ferryman")
PROMETHEUS = "http://127.0.0.1:9090/api/v1"
RESULTS = ROOT / "bench" / "results"
RUN = f"b{int(time.time()) % 1_000_000}"


def ferryman(*args: str, timeout: float = 1800) -> tuple[int, dict, float]:
    """Run `ferryman ARGS --json`; returns its exit code, its record and the wall time."""
    start = time.monotonic()
    done = subprocess.run([FERRYMAN, *args, "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)
    wall = time.monotonic() - start
    lines = done.stdout.strip().splitlines()
    if not lines:
        sys.exit(f"ferryman {' '.join(args)} printed nothing:\n{done.stderr[-3000:]}")
    return done.returncode, json.loads(lines[-1]), wall


def release(version: str, *build_args: str, spec: Path = SPEC,
            strategy: str | None = None) -> tuple[int, dict, float]:
    args = ["release", str(spec), "--version", version]
    for pair in build_args:
        args += ["--build-arg", pair]
    if strategy:
        args += ["--strategy", strategy]
    return ferryman(*args)


def query(promql: str, at: float | None = None) -> list[dict]:
    params = {"query": promql}
    if at is not None:
        params["time"] = at
    body = httpx.get(f"{PROMETHEUS}/query", params=params, timeout=10).json()
    return body["data"]["result"]


def query_range(promql: str, start: float, end: float, step: float = 1) -> list[dict]:
    body = httpx.get(f"{PROMETHEUS}/query_range", params={
        "query": promql, "start": start, "end": end, "step": step}, timeout=30).json()
    return body["data"]["result"]


def scalar(promql: str, at: float | None = None) -> float:
    result = query(promql, at)
    return float(result[0]["value"][1]) if result else 0.0


def settle() -> None:
    """Two scrapes (2 s apart), so that the counters in Prometheus are current."""
    time.sleep(5)


def answers(app: str, start: float, end: float, target: str = "main") -> dict:
    """What users of `app`'s `target` address saw between `start` and `end` (Unix seconds):
    answers per (version, code), from the traffic generator's own counters."""
    window = f"{max(1, round(end - start))}s"
    result = query(f'sum by (version, code) (increase(traffic_responses_total{{app="{app}",'
                   f'target="{target}"}}[{window}]))', at=end)
    return {(r["metric"].get("version", ""), r["metric"].get("code", "")):
            float(r["value"][1]) for r in result}


def exposure(app: str, version: str, start: float, end: float,
             target: str = "main") -> dict:
    """How users met `version` on `app`'s address between `start` and `end`: its answers,
    their share of all answers while it answered, the failed answers users got, and the time
    from its first answer to its last (2 s resolution: Prometheus scrapes every 2 s)."""
    seen = answers(app, start, end, target)
    bad = sum(n for (v, _), n in seen.items() if v == version)
    failed = sum(n for (_, code), n in seen.items() if code.startswith("5") or code == "error")
    series = query_range(
        f'sum(increase(traffic_responses_total{{app="{app}",target="{target}",'
        f'version="{version}"}}[4s]))', start, end + 4, step=2)
    stamps = [float(t) for r in series for t, v in r["values"] if float(v) > 0.5]
    first, last = (min(stamps) - 4, max(stamps)) if stamps else (None, None)
    share = None
    if first is not None:
        while_bad = answers(app, first, last, target)
        during = sum(while_bad.values())
        inside = sum(n for (v, _), n in while_bad.items() if v == version)
        share = 100 * inside / during if during else None
    return {"answers": round(bad), "share_pct": None if share is None else round(share, 1),
            "failed": round(failed), "total": round(sum(seen.values())),
            "seconds": None if first is None else round(last - first, 1)}


def docker_login() -> None:
    """Log the docker CLI in to the stack's registry, as a user who pushes by hand would
    (the stack's password changes with each new state folder)."""
    from devstack.settings import REGISTRY, REGISTRY_USER, StackPaths, registry_password

    subprocess.run(["docker", "login", "-u", REGISTRY_USER, "--password-stdin", REGISTRY],
                   input=registry_password(StackPaths.default()), text=True, check=True,
                   capture_output=True)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def machine() -> str:
    cpus = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{platform.node()}: {cpus} cores, {memory:.0f} GiB, {platform.platform()}"


def save(name: str, results: dict) -> Path:
    """Write `bench/results/<name>.json` with the machine and the time."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        **results}, indent=2))
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain text table, one row per dict."""
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
