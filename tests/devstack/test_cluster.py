"""The Kubernetes test bed works as a cluster: a real node, real pods, real access rules.

The test bed is brought up for these tests (tests/conftest.py, `pytest_runtest_setup`). The
demo app runs as the `ferryman` identity (its kubeconfig under the state folder), as
Ferryman itself does.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from devstack import cluster, cluster_access, cluster_config, cluster_network
from devstack.settings import REGISTRY, REGISTRY_USER, ClusterPaths, StackPaths, registry_password

# The registry and Prometheus are the stack's: these need it as much as the test bed.
pytestmark = [pytest.mark.kubernetes, pytest.mark.stack]

ROOT = Path(__file__).resolve().parents[2]
PATHS = StackPaths.default()
NAMESPACE = cluster_access.NAMESPACE
APP = "testbed-demo"
VERSION = "1.0.0"
IMAGE = f"{REGISTRY}/ferryman/{APP}:{VERSION}"
PROMETHEUS = "http://127.0.0.1:9090"


def _client(kubeconfig: Path):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def admin():
    return _client(ClusterPaths.of(PATHS).admin_kubeconfig)


@pytest.fixture(scope="module")
def ferryman():
    """The identity Ferryman releases with: ServiceAccount `ferryman`, Role `ferryman-release`."""
    return _client(ClusterPaths.of(PATHS).ferryman_kubeconfig)


def _push_demo_image() -> None:
    """The demo app as IMAGE in the stack's registry, pushed with the registry's credentials."""
    import docker

    if not (ROOT / "examples" / "demo-app" / "demo-app").exists():
        subprocess.run(["sh", str(ROOT / "examples" / "demo-app" / "build.sh")], check=True)
    client = docker.from_env(timeout=120)
    client.images.build(path=str(ROOT / "examples" / "demo-app"), tag=IMAGE,
                        buildargs={"APP": APP, "VERSION": VERSION}, rm=True)
    auth = {"username": REGISTRY_USER, "password": registry_password(PATHS)}
    for line in client.images.push(IMAGE, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line


def _deployment() -> dict:
    labels = {"app": APP}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    cluster_access.SCRAPE_ANNOTATION: "true",
                    cluster_access.PORT_ANNOTATION: "8080",
                }},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "app", "image": IMAGE, "imagePullPolicy": "Always",
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                           "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def _service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": APP, "namespace": NAMESPACE},
        "spec": {"selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _ready_pod(core, timeout: float = 180):
    deadline = time.monotonic() + timeout
    seen = "no pod yet"
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"app={APP}").items
        for pod in pods:
            if pod.metadata.deletion_timestamp:
                continue
            ready = [c for c in pod.status.conditions or [] if c.type == "Ready"]
            if ready and ready[0].status == "True":
                return pod
            waiting = [s.state.waiting for s in pod.status.container_statuses or []
                       if s.state and s.state.waiting]
            seen = f"{pod.metadata.name}: {pod.status.phase} " + "; ".join(
                f"{w.reason}: {w.message}" for w in waiting)
        time.sleep(1)
    raise AssertionError(f"no Ready pod of {APP} within {timeout:.0f}s ({seen})")


@pytest.fixture(scope="module")
def demo(ferryman):
    """The demo app's Deployment and Service, created by the `ferryman` identity."""
    from kubernetes import client

    _push_demo_image()
    apps, core = client.AppsV1Api(ferryman), client.CoreV1Api(ferryman)
    for delete in (apps.delete_namespaced_deployment, core.delete_namespaced_service):
        try:
            delete(APP, NAMESPACE)
        except client.ApiException as e:
            assert e.status == 404, e
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(NAMESPACE, label_selector=f"app={APP}").items:
        assert time.monotonic() < deadline, "the previous run's pods did not go"
        time.sleep(1)
    apps.create_namespaced_deployment(NAMESPACE, _deployment())
    service = core.create_namespaced_service(NAMESPACE, _service())
    pod = _ready_pod(core)
    yield pod, service
    apps.delete_namespaced_deployment(APP, NAMESPACE)
    core.delete_namespaced_service(APP, NAMESPACE)


def _http(url: str, timeout: float = 5) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def _prometheus(query: str) -> list[dict]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = _http(url)
    assert status == 200
    return json.loads(body)["data"]["result"]


def test_node_is_ready_with_the_pinned_kubelet_on_containerd(admin):
    from kubernetes import client

    node = client.CoreV1Api(admin).read_node(cluster_config.NODE)
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert node.status.node_info.kubelet_version == cluster.version_pinned()
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    assert {a.address for a in node.status.addresses if a.type == "InternalIP"} == {
        cluster_network.NODE_IP
    }


def test_demo_pod_pulls_through_the_pull_secret_and_runs_on_containerd(demo):
    pod, _ = demo
    assert [s.name for s in pod.spec.image_pull_secrets] == [cluster_access.PULL_SECRET]
    (status,) = pod.status.container_statuses
    assert status.container_id.startswith("containerd://")
    assert status.image_id.startswith(f"{REGISTRY}/ferryman/{APP}@sha256:")
    assert pod.status.pod_ip.startswith("100.64.0.")


def test_pod_without_the_pull_secret_is_refused_by_the_registry(admin, demo):
    """The registry really asks for credentials: the secret is what made the pull work."""
    from kubernetes import client

    core = client.CoreV1Api(admin)
    name = f"{APP}-no-secret"
    core.create_namespaced_pod(NAMESPACE, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            # `ferryman` has no imagePullSecrets; Always: no reuse of the image already pulled.
            "serviceAccountName": cluster_access.SERVICE_ACCOUNT,
            "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Always"}],
        },
    })
    try:
        deadline = time.monotonic() + 60
        failures: list[str] = []
        while time.monotonic() < deadline and not failures:
            time.sleep(1)
            events = core.list_namespaced_event(
                NAMESPACE, field_selector=f"involvedObject.name={name}").items
            failures = [e.message for e in events if e.reason == "Failed"]
        assert failures, "the pull neither failed nor succeeded within 60s"
        assert any("401 unauthorized" in m.lower() for m in failures), failures
        statuses = core.read_namespaced_pod(name, NAMESPACE).status.container_statuses
        assert not statuses[0].ready
    finally:
        core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def test_service_cluster_ip_answers_from_the_host(demo):
    _, service = demo
    assert service.spec.cluster_ip.startswith("100.65.")
    status, body = _http(f"http://{service.spec.cluster_ip}/")
    assert status == 200
    assert VERSION in body


def test_prometheus_discovers_and_scrapes_the_pod(demo):
    pod, service = demo
    _http(f"http://{service.spec.cluster_ip}/")  # a request, so the counters have a series
    selector = f'job="kubernetes-pods",pod="{pod.metadata.name}"'
    deadline = time.monotonic() + 90
    up, requests = [], []
    while time.monotonic() < deadline:
        up = _prometheus(f"up{{{selector}}}")
        requests = _prometheus(f"http_requests_total{{{selector}}}")
        if up and up[0]["value"][1] == "1" and requests:
            break
        time.sleep(2)
    assert up and up[0]["value"][1] == "1", up
    assert up[0]["metric"]["namespace"] == NAMESPACE
    # The pod's own labels survive: honor_labels, not the target's.
    assert {(s["metric"]["app"], s["metric"]["version"]) for s in requests} == {(APP, VERSION)}


def test_ferryman_may_patch_its_deployment(ferryman, demo):
    from kubernetes import client

    apps = client.AppsV1Api(ferryman)
    stamp = str(time.time_ns())
    apps.patch_namespaced_deployment(
        APP, NAMESPACE, {"metadata": {"annotations": {"ferryman.test/stamp": stamp}}}
    )
    annotations = apps.read_namespaced_deployment(APP, NAMESPACE).metadata.annotations
    assert annotations["ferryman.test/stamp"] == stamp


@pytest.mark.parametrize("attempt", ["list nodes", "delete namespace", "read secrets",
                                     "create pods"])
def test_ferryman_is_forbidden_outside_its_role(ferryman, attempt):
    from kubernetes import client

    core = client.CoreV1Api(ferryman)
    calls = {
        "list nodes": core.list_node,
        "delete namespace": lambda: core.delete_namespace(NAMESPACE, dry_run="All"),
        "read secrets": lambda: core.read_namespaced_secret(cluster_access.PULL_SECRET,
                                                            NAMESPACE),
        "create pods": lambda: core.create_namespaced_pod(NAMESPACE, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "forbidden"},
            "spec": {"containers": [{"name": "c", "image": IMAGE}]},
        }, dry_run="All"),
    }
    with pytest.raises(client.ApiException) as refused:
        calls[attempt]()
    assert refused.value.status == 403
