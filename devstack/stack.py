"""The local stack: everything a release needs, on one machine, bound to 127.0.0.1.

`up` starts what is not running (dockerd + a single-node Swarm, an attachable overlay
network, the CNCF registry with htpasswd auth that notifies the webhook receiver of each
push, Prometheus and a traffic generator in containers on that network, a Prefect server
with a process worker) and changes nothing that already runs as wanted. `down` removes
what `up` made and nothing else; the data under the state folder (registry blobs, the
Prefect database, Prometheus' volume) stays unless `purge` is asked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import docker.errors
import yaml

from devstack.processes import Say, alive, spawn, stop, wait_for
from devstack.settings import (
    REGISTRY,
    REGISTRY_USER,
    StackPaths,
    dockerhub_token,
    registry_password,
    stored_secret,
    webhook_secret,
)
from flows import ROOT, SPECS
from tasks.errors import SpecError, StackError
from tasks.spec import ReleaseSpec, load_spec, spec_files

NETWORK = "ferryman"
PREFECT_PORT = 4200
REGISTRY_BLOCK = "local-registry"
WEBHOOK_PORT = 8470
WEBHOOK = f"http://127.0.0.1:{WEBHOOK_PORT}"
WORK_POOL = "ferryman"
PROMETHEUS = "ferryman-prometheus"
PROMETHEUS_IMAGE = "ferryman/prometheus:local"
BINARY_LABEL = "ferryman.binary"
TRAFFIC = "ferryman-traffic"
STACK_LABEL = "ferryman.stack"


def prefect_api_url() -> str:
    return f"http://127.0.0.1:{PREFECT_PORT}/api"


# -- small helpers ------------------------------------------------------------------------


def _http_status(
    url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> int | None:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise StackError(f"{binary} is not installed; run `make setup` (as root on Debian)")
    return path


def app_specs() -> list[ReleaseSpec]:
    """The release specs under deployments/: what Prometheus scrapes and the traffic hits."""
    specs = []
    for file in spec_files(SPECS):
        try:
            specs.append(load_spec(file))
        except SpecError as e:
            raise StackError(f"cannot configure the stack for {file}:\n{e}") from None
    return specs


# -- components ---------------------------------------------------------------------------


def _docker(timeout: int = 30) -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError):
        return None


def ensure_dockerd(paths: StackPaths, record: dict, say: Say) -> docker.DockerClient:
    client = _docker()
    if client is not None:
        say("dockerd: up")
        return client
    dockerd = _need("dockerd")
    log = paths.logs / "dockerd.log"
    spawn([dockerd], log, record, "dockerd")
    wait_for("dockerd", lambda: _docker() is not None, 60, log)
    say(f"dockerd: started (pid {record['dockerd_pid']}, log {log})")
    return _docker()


def ensure_swarm(client: docker.DockerClient, record: dict, say: Say) -> None:
    state = client.info()["Swarm"]["LocalNodeState"]
    if state == "active":
        say("swarm: active")
        return
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    record["swarm_initialized"] = True
    say("swarm: initialised (single node, advertised on 127.0.0.1)")


def ensure_network(client: docker.DockerClient, say: Say) -> None:
    if any(n.name == NETWORK for n in client.networks.list(names=[NETWORK])):
        say(f"network {NETWORK}: present")
        return
    client.networks.create(
        NETWORK, driver="overlay", attachable=True, labels={STACK_LABEL: "true"}
    )
    say(f"network {NETWORK}: created (overlay, attachable)")


def ensure_prefect(paths: StackPaths, record: dict, say: Say) -> None:
    health = f"{prefect_api_url()}/health"
    if _http_status(health) == 200:
        say(f"prefect: up at http://127.0.0.1:{PREFECT_PORT}")
        return
    paths.prefect_home.mkdir(parents=True, exist_ok=True)
    log = paths.logs / "prefect.log"
    spawn(
        [str(Path(sys.executable).parent / "prefect"), "server", "start",
         "--host", "127.0.0.1", "--port", str(PREFECT_PORT)],
        log, record, "prefect",
        env={
            "PREFECT_HOME": str(paths.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "DO_NOT_TRACK": "1",
        },
    )
    wait_for("the Prefect server", lambda: _http_status(health) == 200, 120, log)
    say(f"prefect: started at http://127.0.0.1:{PREFECT_PORT} (pid {record['prefect_pid']})")


def _prefect_cli(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "prefect"), *args]


def _prefect_env() -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_api_url(), "FERRYMAN_ROOT": str(ROOT)}


def ensure_deployments(paths: StackPaths, record: dict, say: Say) -> None:
    """The work pool, the deployments of prefect.yaml, and a process worker on the pool."""
    env = _prefect_env()
    inspect = subprocess.run(
        _prefect_cli("work-pool", "inspect", WORK_POOL), capture_output=True, text=True, env=env
    )
    if inspect.returncode != 0:
        subprocess.run(
            _prefect_cli("work-pool", "create", WORK_POOL, "--type", "process"),
            capture_output=True, text=True, env=env, check=True,
        )
        say(f"work pool {WORK_POOL}: created (process)")
    deployed = subprocess.run(
        _prefect_cli("--no-prompt", "deploy", "--all"),
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    if deployed.returncode != 0:
        output = deployed.stdout[-2000:] + deployed.stderr[-2000:]
        raise StackError(f"prefect deploy failed:\n{output}")
    count = len(yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"])
    say(f"deployments: the {count} of prefect.yaml applied (`prefect deployment ls` lists them)")
    if alive(record, "worker"):
        say(f"worker: running on pool {WORK_POOL} (pid {record['worker_pid']})")
        return
    log = paths.logs / "worker.log"
    spawn(
        _prefect_cli("worker", "start", "--pool", WORK_POOL, "--type", "process"),
        # Poll every 2 s (default 10) so a pushed tag's release starts within seconds.
        log, record, "worker",
        # Its runs say they are alive every 30 s (see ensure_silence_automation).
        env={"PREFECT_API_URL": prefect_api_url(), "FERRYMAN_ROOT": str(ROOT),
             "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
    )
    say(f"worker: started on pool {WORK_POOL} (pid {record['worker_pid']}, log {log})")


SILENCE_AUTOMATION = "ferryman: release runs that went silent"


def ensure_silence_automation(say: Say) -> None:
    """Prefect's zombie-run automation, for release runs: a run that sent no heartbeat for
    90 s (it sends one every 30 s) is marked Crashed, which starts `recover/on-crash`."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    from flows.liveness import SILENT_FOR

    os.environ.setdefault("PREFECT_API_URL", prefect_api_url())
    wanted = Automation(
        name=SILENCE_AUTOMATION,
        description="Marks a release run Crashed when its process stopped sending heartbeats; "
                    "the recover/on-crash deployment then restores its app.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "flow", "prefect.resource.name": "release"}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=SILENT_FOR),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {SILENT_FOR:.0f} s")],
    )
    try:
        existing = Automation.read(name=SILENCE_AUTOMATION)
    except ValueError:
        existing = None
    if existing is None:
        wanted.create()
        say(f"automation {SILENCE_AUTOMATION!r}: created")
        return
    same = ("trigger", "actions", "description", "enabled")
    if existing.model_dump(include=set(same)) == wanted.model_dump(include=set(same)):
        # Left alone: an update would forget the runs the trigger is timing now.
        say(f"automation {SILENCE_AUTOMATION!r}: present")
        return
    wanted.id = existing.id
    wanted.update()
    say(f"automation {SILENCE_AUTOMATION!r}: updated")


def registry_config(paths: StackPaths) -> dict:
    """The registry's configuration: htpasswd auth, and notifications to the receiver."""
    return {
        "version": 0.1,
        # At info the registry logs each notification endpoint with its headers, i.e. the
        # webhook secret; warn keeps its errors (the request log is written either way).
        "log": {"level": "warn", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(paths.registry / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": REGISTRY, "secret": stored_secret(paths.registry / "http-secret")},
        "auth": {"htpasswd": {"realm": "ferryman", "path": str(paths.registry / "htpasswd")}},
        "notifications": {"endpoints": [{
            "name": "ferryman",
            "url": f"{WEBHOOK}/hooks/distribution",
            "headers": {"Authorization": [f"Bearer {webhook_secret(paths)}"]},
            "timeout": "2s",
            "threshold": 3,
            "backoff": "1s",
            # Layer pushes are events too; the receiver acts only on tagged manifests.
            "ignore": {"mediatypes": ["application/octet-stream"]},
        }]},
    }


def _scrub(log: Path, secret: str) -> None:
    """Take `secret` out of a log an older configuration wrote it into (a registry at log
    level info printed the notification endpoint's headers)."""
    if not secret or not log.exists():
        return
    text = log.read_bytes()
    if secret.encode() in text:
        log.write_bytes(text.replace(secret.encode(), b"<redacted>"))


def ensure_registry(paths: StackPaths, record: dict, say: Say) -> None:
    _scrub(paths.logs / "registry.log", webhook_secret(paths))
    url = f"http://{REGISTRY}/v2/"
    config_file = paths.registry / "config.yml"
    wanted = yaml.safe_dump(registry_config(paths))
    if _http_status(url) in (200, 401):
        token = base64.b64encode(f"{REGISTRY_USER}:{registry_password(paths)}".encode()).decode()
        if _http_status(url, headers={"Authorization": f"Basic {token}"}) != 200:
            raise StackError(
                f"a registry on {REGISTRY} refuses this stack's credentials: it was started "
                f"from another state folder than {paths.root}. Stop it (`ferryman stack down` "
                "where it was started) and run `up` again"
            )
        current = config_file.read_text() if config_file.exists() else ""
        if current == wanted or not alive(record, "registry"):
            say(f"registry: up at {REGISTRY}")
            return
        # Started by an earlier `up` with another configuration (e.g. no notifications).
        say("registry: its configuration changed: restarting it")
        stop(record, "registry", say)
    registry = _need("docker-registry")
    htpasswd = _need("htpasswd")
    password = registry_password(paths)
    (paths.registry / "data").mkdir(parents=True, exist_ok=True)
    hashed = subprocess.run(  # -i: the password goes through stdin, never argv
        [htpasswd, "-niB", REGISTRY_USER], input=password, capture_output=True, text=True,
        check=True,
    ).stdout
    (paths.registry / "htpasswd").write_text(hashed)
    config_file.touch(mode=0o600)
    config_file.write_text(wanted)
    log = paths.logs / "registry.log"
    spawn([registry, "serve", str(config_file)], log, record, "registry")
    wait_for("the registry", lambda: _http_status(url) in (200, 401), 30, log)
    say(f"registry: started at {REGISTRY} (pid {record['registry_pid']}, htpasswd auth, "
        f"notifying {WEBHOOK})")


def ensure_receiver(paths: StackPaths, record: dict, say: Say) -> None:
    """The webhook receiver on 127.0.0.1, turning the registry's pushes into Prefect events."""
    health = f"{WEBHOOK}/healthz"
    if _http_status(health) == 200:
        say(f"webhook receiver: up at {WEBHOOK}")
        return
    webhook_secret(paths)
    dockerhub_token(paths)
    log = paths.logs / "webhook.log"
    spawn(
        [str(Path(sys.executable).parent / "ferryman"), "webhook", "serve",
         "--port", str(WEBHOOK_PORT), "--secret-file", str(paths.webhook_secret),
         "--dockerhub-token-file", str(paths.dockerhub_token)],
        log, record, "receiver", env={"PREFECT_API_URL": prefect_api_url()},
    )
    wait_for("the webhook receiver", lambda: _http_status(health) == 200, 60, log)
    say(f"webhook receiver: started at {WEBHOOK} (pid {record['receiver_pid']}, log {log})")


def ensure_registry_block(paths: StackPaths, say: Say) -> None:
    """The prefect-docker block the demo spec names, holding the local registry's password."""
    from prefect_docker.credentials import DockerRegistryCredentials

    os.environ.setdefault("PREFECT_API_URL", prefect_api_url())
    DockerRegistryCredentials(
        username=REGISTRY_USER, password=registry_password(paths), registry_url=REGISTRY
    ).save(REGISTRY_BLOCK, overwrite=True)
    say(f"prefect block {REGISTRY_BLOCK!r}: saved (DockerRegistryCredentials for {REGISTRY})")


def _build_context_image(
    client: docker.DockerClient, context: Path, tag: str, labels: dict[str, str] | None = None
) -> str:
    try:
        image, _ = client.images.build(
            path=str(context), tag=tag, rm=True, forcerm=True, labels=labels
        )
    except docker.errors.BuildError as e:
        tail = "\n".join(str(c.get("stream", c.get("error", ""))).strip() for c in e.build_log)
        raise StackError(f"building {tag} failed: {e.msg}\n{tail[-2000:]}") from None
    return image.id


def build_go_binaries(say: Say) -> None:
    """The demo app and the traffic generator are Go programs built static on the host."""
    _need("go")
    for name in ("demo-app", "traffic"):
        script = ROOT / "examples" / name / "build.sh"
        out = subprocess.run(["sh", str(script)], capture_output=True, text=True)
        if out.returncode != 0:
            raise StackError(f"{script} failed:\n{out.stdout}{out.stderr}")
        say(f"binary {name}: {out.stdout.strip().splitlines()[-1]}")


def prometheus_image(client: docker.DockerClient, paths: StackPaths) -> str:
    """Debian's prometheus in a FROM scratch image with the libraries `ldd` lists.

    Built once per installed binary: the image carries the binary's identity as a label, so
    a later `up` reuses it instead of copying and sending ~100 MB to the engine again.
    """
    binary = Path(kubernetes_prometheus(paths) or _need("prometheus")).resolve()
    stat = binary.stat()
    identity = f"{binary}:{stat.st_size}:{stat.st_mtime_ns}"
    with contextlib.suppress(docker.errors.ImageNotFound):
        image = client.images.get(PROMETHEUS_IMAGE)
        if image.labels.get(BINARY_LABEL) == identity:
            return image.id
    context = paths.root / "images" / "prometheus"
    if context.exists():
        shutil.rmtree(context)
    rootfs = context / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(binary, rootfs / "bin" / "prometheus")
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    for line in ldd.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if lib.startswith("/"):
            target = rootfs / lib.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(lib).resolve(), target)
    (rootfs / "prometheus").mkdir()
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/bin/prometheus\"]\n"
    )
    return _build_context_image(client, context, PROMETHEUS_IMAGE, {BINARY_LABEL: identity})


def prometheus_config(specs: list[ReleaseSpec], extra_jobs: list[dict] | None = None) -> str:
    """Scrape every replica of every Swarm app: DNS service discovery on `tasks.<service>`;
    `extra_jobs` are whole scrape configs (the Kubernetes test bed's pod discovery, which
    finds the Kubernetes apps' pods)."""
    jobs = [
        {
            "job_name": spec.app,
            "metrics_path": spec.target.metrics_path,
            "dns_sd_configs": [{
                # The app's own service and, during a release, its canary and preview.
                "names": [f"tasks.{spec.target.service}{role}"
                          for role in ("", "-canary", "-preview")],
                "type": "A",
                "port": spec.target.port,
                "refresh_interval": "2s",
            }],
        }
        for spec in specs if spec.target.kind == "swarm"
    ]
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
            # What users saw: the traffic generator's answers per app, target, version, code.
            {"job_name": "traffic", "static_configs": [{"targets": [f"{TRAFFIC}:9100"]}]},
            *jobs,
            *(extra_jobs or []),
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def _ensure_container(
    client: docker.DockerClient, name: str, say: Say, describe: str, fingerprint: str = "",
    **run: object,
) -> None:
    """Run a container unless one with the same settings (hashed into a label) already runs.

    `fingerprint` stands for settings that live outside `run`, such as a mounted config file.
    """
    settings = json.dumps(run, sort_keys=True, default=str) + fingerprint
    digest = hashlib.sha256(settings.encode()).hexdigest()
    try:
        existing = client.containers.get(name)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        same = existing.labels.get("ferryman.config-hash") == digest
        if same and existing.status == "running":
            say(f"{name}: running ({describe})")
            return
        existing.remove(force=True)
    client.containers.run(
        name=name, detach=True, network=NETWORK, restart_policy={"Name": "unless-stopped"},
        labels={STACK_LABEL: "true", "ferryman.config-hash": digest}, **run,
    )
    say(f"{name}: {'restarted' if existing else 'started'} ({describe})")


def ensure_prometheus(
    client: docker.DockerClient, paths: StackPaths, specs: list[ReleaseSpec], say: Say
) -> None:
    config_dir = paths.root / "prometheus"
    config_dir.mkdir(parents=True, exist_ok=True)
    extra = kubernetes_scrape_jobs(paths, config_dir)
    (config_dir / "prometheus.yml").write_text(prometheus_config(specs, extra))
    image = prometheus_image(client, paths)
    _ensure_container(
        client, PROMETHEUS, say, "API on http://127.0.0.1:9090",
        image=image,
        command=[
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=15d",
            "--web.listen-address=0.0.0.0:9090",
            "--web.enable-lifecycle",
        ],
        fingerprint=hashlib.sha256((config_dir / "prometheus.yml").read_bytes()).hexdigest(),
        volumes={
            str(config_dir): {"bind": "/etc/prometheus", "mode": "ro"},
            "ferryman-prometheus-data": {"bind": "/prometheus", "mode": "rw"},
        },
        ports={"9090/tcp": ("127.0.0.1", 9090)},
    )
    wait_for(
        "Prometheus", lambda: _http_status("http://127.0.0.1:9090/-/ready") == 200, 60
    )


def ensure_traffic(client: docker.DockerClient, specs: list[ReleaseSpec], say: Say,
                   paths: StackPaths | None = None) -> None:
    # Each app's own address, and its blue-green preview address while one exists.
    targets = ",".join([
        *(f"{s.app}={kind}@{s.target.service}{suffix}:{s.target.port}/"
          for s in specs if s.target.kind == "swarm"
          for kind, suffix in (("main", ""), ("preview", "-preview"))),
        *kubernetes_traffic(paths or StackPaths.default(), specs),
    ])
    image = _build_context_image(client, ROOT / "examples" / "traffic", "ferryman/traffic:local")
    _ensure_container(
        client, TRAFFIC, say, f"{targets or 'no targets'} at 20 req/s each",
        image=image, environment={"TARGETS": targets, "RPS": "20"},
    )


# -- the Kubernetes test bed (devstack/cluster.py) ----------------------------------------


def kubernetes_scrape_jobs(paths: StackPaths, config_dir: Path) -> list[dict]:
    """Prometheus' pod discovery on the test bed while it is up; nothing otherwise."""
    from devstack import cluster_access

    return cluster_access.prometheus_jobs(paths, config_dir)


def kubernetes_traffic(paths: StackPaths, specs: list[ReleaseSpec]) -> list[str]:
    """While the test bed is up: the Kubernetes apps' Services, by the ClusterIPs their
    manifests pin (the traffic generator has no cluster DNS); nothing otherwise."""
    from devstack import cluster_access, cluster_health

    return cluster_access.traffic_targets(specs) if cluster_health.is_up(paths) else []


def kubernetes_prometheus(paths: StackPaths) -> Path | None:
    """While the test bed is up: Prometheus built with Kubernetes discovery, which Debian's
    lacks (same release, 2.42); None otherwise, and the stack runs Debian's."""
    from devstack import cluster

    return cluster.prometheus_binary(paths)


def kubernetes_status(paths: StackPaths) -> list[tuple[str, bool, str]]:
    from devstack import cluster

    return cluster.status(paths=paths)


def kubernetes_down(paths: StackPaths, say: Say, purge: bool) -> None:
    from devstack import cluster

    cluster.down(say, paths, purge=purge)


# -- the commands -------------------------------------------------------------------------


def up(say: Say = print, paths: StackPaths | None = None, kubernetes: bool = False) -> None:
    """Bring the local stack up; idempotent. Raises StackError naming what did not start.
    `kubernetes` also brings up the Kubernetes test bed (devstack/cluster.py)."""
    paths = paths or StackPaths.default()
    paths.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.logs.chmod(0o700)
    record = paths.load_record()
    try:
        specs = app_specs()
        client = ensure_dockerd(paths, record, say)
        ensure_swarm(client, record, say)
        ensure_network(client, say)
        ensure_prefect(paths, record, say)
        ensure_receiver(paths, record, say)
        ensure_registry(paths, record, say)
        ensure_registry_block(paths, say)
        ensure_deployments(paths, record, say)
        ensure_silence_automation(say)
        build_go_binaries(say)
        if kubernetes:
            from devstack import cluster

            cluster.up(say, paths)
        ensure_prometheus(client, paths, specs, say)
        ensure_traffic(client, specs, say, paths)
    finally:
        paths.save_record(record)
    say(f"Prefect UI: http://127.0.0.1:{PREFECT_PORT}")


def status(say: Say = print, paths: StackPaths | None = None) -> bool:
    """Print each component's state; True when all are up."""
    paths = paths or StackPaths.default()
    checks: list[tuple[str, bool, str]] = []
    client = _docker(timeout=10)
    checks.append(("dockerd", client is not None, "docker engine answering"))
    if client is not None:
        swarm = client.info()["Swarm"]["LocalNodeState"]
        checks.append(("swarm", swarm == "active", swarm))
        checks.append(("network", bool(client.networks.list(names=[NETWORK])), NETWORK))
        for name in (PROMETHEUS, TRAFFIC):
            try:
                state = client.containers.get(name).status
            except docker.errors.NotFound:
                state = "absent"
            checks.append((name, state == "running", state))
        for service in client.services.list(filters={"label": "ferryman.managed=true"}):
            labels = service.attrs["Spec"].get("Labels", {})
            checks.append((
                f"service {service.name}", True,
                f"running {labels.get('ferryman.version', '?')}, "
                f"stable {labels.get('ferryman.stable.version', 'none')}",
            ))
    checks.append(("registry", _http_status(f"http://{REGISTRY}/v2/") in (200, 401), REGISTRY))
    checks.append(("webhook receiver", _http_status(f"{WEBHOOK}/healthz") == 200, WEBHOOK))
    checks.append((
        "prometheus api", _http_status("http://127.0.0.1:9090/-/ready") == 200,
        "http://127.0.0.1:9090",
    ))
    checks.append((
        "prefect", _http_status(f"{prefect_api_url()}/health") == 200,
        f"http://127.0.0.1:{PREFECT_PORT}",
    ))
    checks.extend(kubernetes_status(paths))
    for name, ok, detail in checks:
        say(f"{name:<24} {'up  ' if ok else 'DOWN'}  {detail}")
    return all(ok for _, ok, _ in checks)


def down(say: Say = print, paths: StackPaths | None = None, purge: bool = False) -> None:
    """Remove what `up` made: containers, app services on the stack network, the network,
    and the processes and Swarm that `up` itself started. `purge` also deletes the data."""
    paths = paths or StackPaths.default()
    kubernetes_down(paths, say, purge)
    record = paths.load_record()
    client = _docker(timeout=30)
    if client is not None:
        for container in client.containers.list(all=True, filters={"label": f"{STACK_LABEL}=true"}):
            container.remove(force=True)
            say(f"{container.name}: removed")
        # App services sit on the stack's network; it cannot go while they are attached.
        services = client.services.list(filters={"label": "ferryman.managed=true"})
        for service in services:
            service.remove()
            say(f"service {service.name}: removed")
        # Swarm stops and removes the tasks' containers after the service; leaving the swarm
        # before that would strand them. Containers of tasks Swarm no longer knows (an engine
        # restart leaves some behind, exited) are removed here.
        for service in services:
            label = {"label": f"com.docker.swarm.service.id={service.id}"}
            wait_for(f"the containers of service {service.name}",
                     lambda f=label: not client.containers.list(filters=f), 60, happen="stop")
            for container in client.containers.list(all=True, filters=label):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
        # Only the network `up` made: Docker's name filter matches any name containing it.
        made = client.networks.list(filters={"label": f"{STACK_LABEL}=true"})
        for network in (n for n in made if n.name == NETWORK):
            for _ in range(30):
                try:
                    network.remove()
                    say(f"network {NETWORK}: removed")
                    break
                except docker.errors.APIError:
                    time.sleep(1)  # service tasks take a moment to detach
        if purge:
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get("ferryman-prometheus-data").remove(force=True)
        if record.pop("swarm_initialized", False):
            client.swarm.leave(force=True)
            say("swarm: left (ferryman had initialised it)")
    for name in ("worker", "registry", "receiver", "prefect", "dockerd"):
        stop(record, name, say)
    paths.save_record(record)
    if purge:
        shutil.rmtree(paths.root, ignore_errors=True)
        say(f"state folder {paths.root}: removed")
