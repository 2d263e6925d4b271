"""What the tests of the Kubernetes target share: is the test bed there, the demo-k8s
objects cleared, its images in the stack's registry, and requests to its Services.

Every address of the test bed (node, pods, Services) is routed on this machine only while
the test bed's network is up. These helpers check the route before they send anything to
such an address, so that a test bed whose network went away is a skip, never traffic that
leaves the machine.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.settings import REGISTRY, REGISTRY_USER, StackPaths, registry_password
from tasks.targets import Version

ROOT = Path(__file__).resolve().parents[1]
PATHS = StackPaths.default()
NAMESPACE = "ferryman-demo"
APP = "demo-k8s"
NAMES = {"deployments": (APP, f"{APP}-canary", f"{APP}-preview"),
         "services": (APP, f"{APP}-preview")}
MAIN_IP, PREVIEW_IP = "100.65.0.80", "100.65.0.81"  # pinned by deployments/demo-k8s/k8s
REPOSITORY = f"{REGISTRY}/ferryman/{APP}"


def routed_here(ip: str) -> bool:
    """Whether packets for `ip` stay on this machine: a local address, or the test bed's
    own interfaces (never the default route)."""
    route = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True).stdout
    first = route.splitlines()[0] if route else ""
    return first.startswith("local ") or " dev ferryman-" in first


def require_up() -> None:
    """Fail (never skip) when the test bed cannot be used: tests/conftest.py brings it up
    before the first Kubernetes test, so a problem here is one to see."""
    why = problem()
    if why:
        pytest.fail(f"the Kubernetes test bed is not up: {why}")


def problem() -> str | None:
    """Why the test bed cannot be used now, or None when it can."""
    from devstack.cluster_health import is_up
    from devstack.cluster_network import NODE_IP

    for ip in (NODE_IP, MAIN_IP):
        if not routed_here(ip):
            return (f"the Kubernetes test bed's network is not up ({ip} is not routed on "
                    "this machine); run `ferryman stack up --kubernetes`")
    if not is_up(PATHS):
        return "the Kubernetes test bed is not up (run `ferryman stack up --kubernetes`)"
    return None


def kubeconfig() -> Path:
    """The test bed's `ferryman` identity; FERRYMAN_TEST_KUBECONFIG names another (to check
    a Role before the stack applies it)."""
    from devstack.settings import ClusterPaths

    other = os.environ.get("FERRYMAN_TEST_KUBECONFIG")
    return Path(other) if other else ClusterPaths.of(PATHS).ferryman_kubeconfig


def api_client():
    """The `ferryman` identity's client: what Ferryman releases with."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig()))


def clear(api, timeout: float = 120) -> None:
    """Delete the demo-k8s Deployments and Services and wait until their pods are gone."""
    from kubernetes import client

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    for name in NAMES["deployments"]:
        _gone(lambda n=name: apps.delete_namespaced_deployment(n, NAMESPACE,
                                                               grace_period_seconds=1))
    for name in NAMES["services"]:
        _gone(lambda n=name: core.delete_namespaced_service(n, NAMESPACE))
    deadline = time.monotonic() + timeout
    while [p for p in core.list_namespaced_pod(NAMESPACE).items
           if p.metadata.name.startswith(f"{APP}-")]:
        assert time.monotonic() < deadline, "the demo-k8s pods did not go"
        time.sleep(1)


def _gone(delete) -> None:
    from kubernetes import client

    try:
        delete()
    except client.ApiException as e:
        assert e.status == 404, e


def push_image(version: str, **build_args: str) -> Version:
    """The demo app as `version` in the stack's registry; pinned by digest."""
    import docker

    if not (ROOT / "examples" / "demo-app" / "demo-app").exists():
        subprocess.run(["sh", str(ROOT / "examples" / "demo-app" / "build.sh")], check=True)
    engine = docker.from_env(timeout=120)
    tag = f"{REPOSITORY}:{version}"
    engine.images.build(path=str(ROOT / "examples" / "demo-app"), tag=tag, rm=True,
                        buildargs={"APP": APP, "VERSION": version, **build_args})
    auth = {"username": REGISTRY_USER, "password": registry_password(PATHS)}
    for line in engine.images.push(tag, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    digest = engine.images.get_registry_data(tag, auth_config=auth).id
    return Version(version, f"{REPOSITORY}@{digest}")


@dataclass
class Answers:
    """Requests to one address, each on a new connection (kube-proxy picks a pod per
    connection), and who answered: (monotonic time, version or '', status or 0)."""

    ip: str
    port: int = 8080
    rate: float = 20.0
    seen: list[tuple[float, str, int]] = field(default_factory=list)
    unsent: list[float] = field(default_factory=list)
    """When a request was not sent because the address was not routed here any more."""
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Answers:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(1 / self.rate):
            if not routed_here(self.ip):  # the network went away: send nothing
                self.unsent.append(time.monotonic())
                continue
            self.seen.append((time.monotonic(), *ask(self.ip, self.port)))

    def since(self, start: float) -> list[tuple[str, int]]:
        """The answers from `start` on. Fails when requests stopped going out meanwhile (the
        address was no longer routed here): counts of a version from a silent generator
        would pass for "it never answered"."""
        return [(v, c) for _, v, c in self.timeline(start)]

    def timeline(self, start: float) -> list[tuple[float, str, int]]:
        """(time, version, status) of each request from `start` on; fails as `since`."""
        gaps = [t for t in list(self.unsent) if t >= start]
        assert not gaps, (f"requests to {self.ip} stopped for {len(gaps)} tick(s) from "
                          f"{gaps[0]:.1f} (the address was not routed here)")
        return [r for r in list(self.seen) if r[0] >= start]

    def versions(self, start: float = 0.0) -> dict[str, int]:
        counts: dict[str, int] = {}
        for version, _ in self.since(start):
            counts[version] = counts.get(version, 0) + 1
        return counts


def ask(ip: str, port: int = 8080, timeout: float = 2) -> tuple[str, int]:
    """One GET / on a new connection: (X-App-Version, status), ('', 0) without an answer."""
    if not routed_here(ip):
        return "", 0
    connection = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return response.getheader("X-App-Version", ""), response.status
    except OSError:
        return "", 0
    finally:
        connection.close()


def until(check, timeout: float = 60, every: float = 0.5):
    """Poll `check` until it returns something true; that value, or the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)
