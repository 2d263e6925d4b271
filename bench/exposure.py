"""What users saw of a bad version, and how long until the old one was back: Ferryman's
rolling, blue-green and canary against the platform's own rolling update, side by side, on
the demo app on Swarm (`demo`) and on the Kubernetes test bed (`demo-k8s`).

For each bad version (half its answers 500, +300 ms on every answer, crashing at start) and
each way of releasing it, from the traffic generator's own counters (20 requests/s to the
app's address): how many answers users got from the bad version, their share while it
answered, the failed answers users got, and the time from its first answer to its last.
Then the time to restore against its floor: one scrape interval + one analysis interval +
the platform's own time to put the old version back.

The baselines are what a user of each platform gets without Ferryman. On Swarm,
`docker service update` with a health check, `--update-failure-action rollback` and
`--update-monitor`: it rolls back a version whose tasks die. On Kubernetes, the Deployment's
own rolling update (maxSurge 1, maxUnavailable 0) with its readiness probe: a version whose
pods never get ready is held back, never rolled back. Neither catches a version that answers
badly; then users keep it until someone acts (here, after OBSERVE seconds), and a held-back
rollout is undone by that person too.

    make bench-exposure          # BENCH_REPEAT=3 runs of each; medians; brings the test bed up
    BENCH_BAD=fail50 BENCH_WAYS=canary,native BENCH_PLATFORMS=kubernetes BENCH_REPEAT=1 \
        make bench-exposure
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml

from bench.common import (
    K8S_SPEC,
    ROOT,
    RUN,
    SPEC,
    docker_login,
    exposure,
    median,
    release,
    save,
    settle,
    table,
)
from devstack.settings import REGISTRY

REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
OBSERVE = float(os.environ.get("BENCH_OBSERVE", "60"))
"""How long the baseline leaves a version Swarm did not catch before someone restores it."""
ALL_BAD = {"fail50": ["FAIL_RATE=0.5"], "slow300": ["EXTRA_LATENCY_MS=300"],
           "crash": ["CRASH_ON_START=1"]}
BAD = {k: v for k, v in ALL_BAD.items()
       if k in os.environ.get("BENCH_BAD", ",".join(ALL_BAD)).split(",")}
WAYS = [w for w in ("rolling", "blue-green", "canary", "native")
        if w in os.environ.get("BENCH_WAYS", "rolling,blue-green,canary,native").split(",")]
PLATFORMS = {p: app for p, app in (("swarm", "demo"), ("kubernetes", "demo-k8s"))
             if p in os.environ.get("BENCH_PLATFORMS", "swarm,kubernetes").split(",")}
"""Each platform and the app released on it."""
RESULTS_NAME = "exposure" if len(PLATFORMS) > 1 else f"exposure-{next(iter(PLATFORMS), '')}"
"""bench/results/<name>.json: one platform's rows apart, so both can be measured at once."""
SCRAPE_INTERVAL = 2.0
NAMESPACE = "ferryman-demo"  # deployments/demo-k8s/release.yaml's


def _ferryman_kubeconfig() -> Path:
    from devstack.settings import ClusterPaths, StackPaths

    return ClusterPaths.of(StackPaths.default()).ferryman_kubeconfig


def bench_spec(tmp: Path, platform: str) -> Path:
    """The platform's demo spec with a quicker analysis (the first look 8 s after the first
    new replica, then every 3 s), the same for every strategy."""
    source = SPEC if platform == "swarm" else K8S_SPEC
    data = yaml.safe_load(source.read_text())
    data["image"]["context"] = str(ROOT / "examples" / "demo-app")
    if platform == "swarm":
        data["target"]["stack_file"] = str(SPEC.parent / "stack.yml")
    else:
        data["target"].update({"kubeconfig": str(_ferryman_kubeconfig()),
                               "manifests": str(K8S_SPEC.parent / "k8s")})
    data["analysis"].update({"initial_delay": "8s", "interval": "3s", "count": 4,
                             "inconclusive_limit": 2})
    data["strategy"] = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}},
                                                    {"weight": 50}, {"analysis": {}}]}
    path = tmp / f"{platform}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def with_ferryman(spec: Path, app: str, way: str, version: str, build_args: list[str]) -> dict:
    strategy = None if way == "canary" else way  # the bench spec's own kind is canary
    start = time.time()
    code, record, wall = release(version, *build_args, spec=spec, strategy=strategy)
    settle()
    seen = exposure(app, version, start - 2, time.time())
    restore = next((s["end"] - s["start"] for s in record.get("steps", [])
                    if s["name"] == "roll back"), None)
    return {"outcome": record["outcome"], "wall_s": round(wall, 1), **seen,
            "restore_s": None if restore is None else round(restore, 1),
            "floor_s": None if restore is None else round(SCRAPE_INTERVAL + 3.0 + restore, 1)}


def _service_image() -> str:
    out = subprocess.run(["docker", "service", "inspect", "demo", "--format",
                          "{{.Spec.TaskTemplate.ContainerSpec.Image}}"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


HEALTHCHECK = ('HEALTHCHECK --interval=2s --timeout=5s --retries=3 --start-period=2s '
               'CMD ["/demo-app", "-check"]')
"""The Swarm baseline's image carries a health check (exec form: the image has no shell);
on Kubernetes the Deployment's readiness probe plays that part."""


def _push(app: str, version: str, build_args: list[str], healthcheck: bool) -> str:
    """Build and push `app` at `version` for a baseline, as its users would, without
    Ferryman; returns the image's name."""
    import tempfile

    image = f"{REGISTRY}/ferryman/{app}-bench:{version}"
    plain = f"{image}-plain" if healthcheck else image
    args = ["docker", "build", "-q", "-t", plain, "--build-arg", f"APP={app}",
            "--build-arg", f"VERSION={version}"]
    for pair in build_args:
        args += ["--build-arg", pair]
    subprocess.run([*args, str(ROOT / "examples" / "demo-app")], check=True,
                   capture_output=True)
    if healthcheck:
        with tempfile.TemporaryDirectory() as context:
            Path(context, "Dockerfile").write_text(f"FROM {plain}\n{HEALTHCHECK}\n")
            subprocess.run(["docker", "build", "-q", "-t", image, context], check=True,
                           capture_output=True)
    subprocess.run(["docker", "push", "-q", image], check=True, capture_output=True)
    return image


NATIVE = ["--update-failure-action", "rollback", "--update-monitor", "10s",
          "--update-parallelism", "1", "--update-delay", "1s", "--update-order",
          "start-first", "--rollback-parallelism", "0", "--rollback-order", "start-first",
          "--health-interval", "1s", "--health-retries", "2", "--health-start-period", "2s",
          "--with-registry-auth"]
"""Swarm's own update with rollback. The health check's command is the image's (exec form):
`--health-cmd` would make it a shell command, and the image has no shell, so every task
would turn unhealthy and be rolled back, good or bad."""


def with_swarm(version: str, build_args: list[str]) -> dict:
    """Swarm's own update with rollback; a version it does not catch is restored by hand
    after OBSERVE seconds, as the person on call would."""
    good = _service_image()
    bad = _push("demo", version, build_args, healthcheck=True)
    start = time.time()
    update = subprocess.run(["docker", "service", "update", "--quiet", "--image", bad,
                             *NATIVE, "demo"], capture_output=True, text=True)
    state = subprocess.run(["docker", "service", "inspect", "demo", "--format",
                            "{{.UpdateStatus.State}}"], capture_output=True, text=True)
    caught = _service_image() == good and "rollback" in state.stdout
    if _service_image() == good and not caught:
        raise SystemExit(f"docker service update did not run: {update.stderr[-500:]}")
    restore = None
    if not caught:
        time.sleep(max(0.0, OBSERVE - (time.time() - start)))
        began = time.monotonic()
        subprocess.run(["docker", "service", "update", "--quiet", "--image", good,
                        "--update-parallelism", "0", "demo"], capture_output=True, check=True)
        restore = time.monotonic() - began
    settle()
    seen = exposure("demo", version, start - 2, time.time())
    return {"outcome": "rolled back by Swarm" if caught else f"not caught ({OBSERVE:.0f} s)",
            "wall_s": round(time.time() - start, 1), **seen,
            "restore_s": None if restore is None else round(restore, 1), "floor_s": None}


COLUMNS = ["platform", "bad version", "way", "outcome", "answers", "share_pct", "failed",
           "seconds", "restore_s", "floor_s", "vs_floor"]


def summary(platform: str, bad: str, way: str, runs: list[dict]) -> dict:
    """One row of the table: the medians of the runs of one way with one bad version."""
    row = {"platform": platform, "bad version": bad,
           "way": f"{platform} native" if way == "native" else way,
           "outcome": runs[-1]["outcome"]}
    for key in ("answers", "share_pct", "failed", "seconds", "restore_s", "floor_s"):
        row[key] = median([r[key] for r in runs])
    if row["seconds"] is not None and row["floor_s"]:
        row["vs_floor"] = round(row["seconds"] / row["floor_s"], 2)
    row["runs"] = runs
    return row


def _deployments():
    """The Deployments API as Ferryman's own identity on the test bed."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(_ferryman_kubeconfig()))
    return client.AppsV1Api(api)


def _set_image(apps, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps.patch_namespaced_deployment("demo-k8s", NAMESPACE, patch)


def _rollout(apps, seconds: float) -> str:
    """Wait for the Deployment's rollout by `kubectl rollout status`'s rule (the Kubernetes
    target's own, `rollout`): `complete`, `stalled` (past its progressDeadlineSeconds), or
    `in progress` after `seconds`."""
    from tasks.platforms.kubernetes.rollout import rollout

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        deployment = apps.api_client.sanitize_for_serialization(
            apps.read_namespaced_deployment("demo-k8s", NAMESPACE))
        state = rollout(deployment)
        if state.done or state.failed:
            return "complete" if state.done else "stalled"
        time.sleep(0.5)
    return "in progress"


def with_kubernetes(version: str, build_args: list[str]) -> dict:
    """The Deployment's own rolling update with its readiness probe; after OBSERVE seconds
    the person on call puts the old image back (`kubectl rollout undo`), whether the bad
    version took over or its rollout was held back."""
    apps = _deployments()
    pod = apps.read_namespaced_deployment("demo-k8s", NAMESPACE).spec.template.spec
    good = next(c.image for c in pod.containers if c.name == "app")
    bad = _push("demo-k8s", version, build_args, healthcheck=False)
    start = time.time()
    _set_image(apps, bad)
    state = _rollout(apps, OBSERVE)
    time.sleep(max(0.0, OBSERVE - (time.time() - start)))
    began = time.monotonic()
    _set_image(apps, good)
    if _rollout(apps, 180) != "complete":
        raise SystemExit(f"demo-k8s did not come back to {good}")
    restore = time.monotonic() - began
    settle()
    seen = exposure("demo-k8s", version, start - 2, time.time())
    outcome = ("held back by the readiness probe" if state != "complete"
               else "not caught")
    return {"outcome": f"{outcome} ({OBSERVE:.0f} s)", "wall_s": round(time.time() - start, 1),
            **seen, "restore_s": round(restore, 1), "floor_s": None}


def main() -> None:
    import tempfile

    docker_login()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for platform, app in PLATFORMS.items():
            spec = bench_spec(Path(tmp), platform)
            code, record, _ = release(f"7.0.0-{RUN}", spec=spec, strategy="rolling")
            if code != 0:
                raise SystemExit(f"the good baseline of {app} was not promoted: "
                                 f"{record['reason']}")
            for bad, build_args in BAD.items():
                for way in WAYS:
                    runs = []
                    for i in range(REPEAT):
                        version = f"7.{len(rows) + 1}.{i}-{RUN}-{bad}"
                        if way != "native":
                            runs.append(with_ferryman(spec, app, way, version, build_args))
                        elif platform == "swarm":
                            runs.append(with_swarm(version, build_args))
                        else:
                            runs.append(with_kubernetes(version, build_args))
                    rows.append(summary(platform, bad, way, runs))
                    print(table([rows[-1]], COLUMNS).splitlines()[-1], flush=True)
                    # After each row: a run stopped part way keeps what it measured.
                    save(RESULTS_NAME, {"repeat": REPEAT, "observe_s": OBSERVE, "rows": rows})
    print()
    print(f"What users saw of a bad version (medians of {REPEAT}; 20 requests/s; answers: "
          "the bad version's; share: of all answers while it answered; seconds: its first "
          "answer to its last; floor: scrape 2 s + analysis interval 3 s + restore)")
    print(table(rows, COLUMNS))
    path = save(RESULTS_NAME, {"repeat": REPEAT, "observe_s": OBSERVE, "rows": rows})
    print(f"\nwritten: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
