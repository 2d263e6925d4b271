"""What Ferryman costs: a promoted release against the same steps done by a plain script,
and the Prometheus queries a release sends.

The script does what a careful shell script would: docker build, docker push, docker
service update (the stack file's update_config) and, once the update is done, a loop of the
spec's queries with the same initial delay, interval and count. Ferryman's rolling release
does the same work, but judges the new version while the update goes on (background
analysis), so a ratio below 1 is possible. Runs alternate, BENCH_REPEAT of each; medians.

    make bench-overhead
"""

from __future__ import annotations

import os
import string
import subprocess
import time

import yaml

from bench.common import ROOT, RUN, SPEC, median, query, release, save, scalar, table

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
IMAGE = "127.0.0.1:5000/ferryman/demo"


def plain_script(version: str) -> dict:
    """The release as a script of docker and Prometheus calls, timed per step."""
    spec = yaml.safe_load(SPEC.read_text())
    analysis = spec["analysis"]
    image = f"{IMAGE}:{version}"
    steps = {}
    begin = time.monotonic()
    subprocess.run(["docker", "build", "-q", "-t", image, "--build-arg", "APP=demo",
                    "--build-arg", f"VERSION={version}", str(ROOT / "examples" / "demo-app")],
                   check=True, capture_output=True)
    steps["build"] = time.monotonic() - begin
    mark = time.monotonic()
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    steps["push"] = time.monotonic() - mark
    mark = time.monotonic()
    subprocess.run(["docker", "service", "update", "--quiet", "--with-registry-auth",
                    "--image", image, "demo"], check=True, capture_output=True)
    steps["service update"] = time.monotonic() - mark
    mark = time.monotonic()
    interval = _seconds(analysis["interval"])
    time.sleep(_seconds(analysis["initial_delay"]))
    variables = {"app": "demo", "version": version, "previous_version": "", "service": "demo",
                 "namespace": "", "step": ""}
    for i in range(analysis["count"]):
        due = mark + _seconds(analysis["initial_delay"]) + i * interval
        time.sleep(max(0.0, due - time.monotonic()))
        for metric in analysis["metrics"]:
            query(string.Template(metric["query"]).substitute(variables))
    steps["query loop"] = time.monotonic() - mark
    return {"wall": time.monotonic() - begin, "steps": steps}


def _seconds(value) -> float:
    from tasks.durations import parse_duration

    return parse_duration(value)


def queries_sent() -> float:
    return scalar('sum(prometheus_http_requests_total{handler="/api/v1/query"})')


def main() -> None:
    ferryman_runs, script_runs, costs = [], [], []
    for i in range(REPEAT):
        before = queries_sent()
        code, record, wall = release(f"8.{i}.0-{RUN}")
        time.sleep(3)
        sent = queries_sent() - before
        if code != 0:
            raise SystemExit(f"the release was not promoted: {record['reason']}")
        rounds = len({(m["step"], m["index"]) for m in record["measurements"]})
        ferryman_runs.append({"wall": wall, "steps": {s["name"]: s["end"] - s["start"]
                                                      for s in record["steps"]}})
        costs.append({"queries": sent, "measurements": len(record["measurements"]),
                      "rounds": rounds})
        script_runs.append(plain_script(f"8.{i}.1-{RUN}"))
    f_wall = median([r["wall"] for r in ferryman_runs])
    s_wall = median([r["wall"] for r in script_runs])
    rows = [
        {"release": "ferryman (rolling, background analysis)", "wall_s": f_wall,
         "steps": ", ".join(f"{k} {median([r['steps'].get(k) for r in ferryman_runs])}"
                            for k in ferryman_runs[0]["steps"])},
        {"release": "plain script (build, push, update, query loop)", "wall_s": s_wall,
         "steps": ", ".join(f"{k} {median([r['steps'][k] for r in script_runs])}"
                            for k in script_runs[0]["steps"])},
    ]
    cost = {k: median([c[k] for c in costs]) for k in ("queries", "measurements", "rounds")}
    print(table(rows, ["release", "wall_s", "steps"]))
    print(f"\nratio ferryman / script (median wall times of {REPEAT}): {f_wall / s_wall:.2f}")
    print(f"Prometheus queries per promoted release: {cost['queries']:.0f} "
          f"({cost['measurements']:.0f} measurements in {cost['rounds']:.0f} rounds: "
          f"{cost['queries'] / cost['rounds']:.1f} per analysis interval; the rest are the "
          "restored/other runs' and Prometheus' own UI)")
    path = save("overhead", {"repeat": REPEAT, "ferryman": ferryman_runs, "script": script_runs,
                             "ratio": f_wall / s_wall, "prometheus": costs})
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
