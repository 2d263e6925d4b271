"""Who may do what on the Kubernetes test bed, applied by `devstack.cluster.up`.

Ferryman releases as the ServiceAccount `ferryman` of the namespace `ferryman-demo`, never as
a cluster admin. Its Role grants what the Kubernetes target (tasks/platforms/kubernetes/target.py)
needs and nothing more:

- apps deployments: get create patch delete. Read each role's Deployment; apply a new app's
  and a canary's or preview's (server-side apply of a new object needs create besides
  patch); patch images, replicas, templates and the restore-point annotations; remove a
  canary or preview (or a first install that failed).
- apps replicasets: list. Tell a Deployment's own pods from a canary's, which its selector
  also matches.
- pods: list. Readiness of the new version's pods; crash loops and image pull failures.
- services: get create patch delete. Read the app's Service; apply the manifests' Services;
  switch its selector (blue-green); point, make and remove the preview Service.

It polls, so it needs no watch; it scales by patching the Deployment, so no
deployments/scale; it reads why a pod is stuck from the pod's own status, so no events.

Not granted: ConfigMaps and Secrets (restore points live in the Deployment's own
annotations; the pull secret is made here, by the stack), pods/exec and pods/log, nodes,
namespaces and anything cluster-wide. Prometheus discovers pods as the ServiceAccount
`prometheus` of `kube-system`, which may only get/list/watch pods.

Pods pull from the stack's registry with the imagePullSecret `local-registry`, made from the
registry's credentials and attached to the namespace's `default` ServiceAccount, as users do.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from devstack import cluster_pki
from devstack.cluster_config import NODE
from devstack.cluster_health import is_up
from devstack.cluster_network import API_SERVER
from devstack.processes import Say
from devstack.settings import REGISTRY, REGISTRY_USER, ClusterPaths, StackPaths, registry_password
from tasks.errors import StackError

NAMESPACE = "ferryman-demo"
SERVICE_ACCOUNT = "ferryman"
ROLE = "ferryman-release"
PULL_SECRET = "local-registry"
PROMETHEUS_NAMESPACE = "kube-system"
PROMETHEUS_ACCOUNT = "prometheus"
FIELD_MANAGER = "ferryman-stack"
# A pod is scraped when it says so, on the port it names (the usual annotations).
SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"

RELEASE_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "create", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch", "delete"]},
]


def _api_client(cp: ClusterPaths):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cp.admin_kubeconfig))


def _token_secret(name: str, namespace: str, account: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {"kubernetes.io/service-account.name": account}},
    }


def objects(paths: StackPaths) -> list[dict]:
    """Everything the stack applies to the test bed, as manifests."""
    password = registry_password(paths)
    auth = base64.b64encode(f"{REGISTRY_USER}:{password}".encode()).decode()
    docker_config = {"auths": {REGISTRY: {
        "username": REGISTRY_USER, "password": password, "auth": auth,
    }}}
    meta = {"namespace": NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": ROLE, **meta}, "rules": RELEASE_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": ROLE, **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, **meta}]},
        _token_secret(f"{SERVICE_ACCOUNT}-token", NAMESPACE, SERVICE_ACCOUNT),
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
         "metadata": {"name": PULL_SECRET, **meta},
         "data": {".dockerconfigjson": base64.b64encode(
             json.dumps(docker_config).encode()).decode()}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", **meta},
         "imagePullSecrets": [{"name": PULL_SECRET}]},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": PROMETHEUS_ACCOUNT, "namespace": PROMETHEUS_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "ferryman:prometheus-discovery"},
         "rules": [{"apiGroups": [""], "resources": ["pods"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "ferryman:prometheus-discovery"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "ferryman:prometheus-discovery"},
         "subjects": [{"kind": "ServiceAccount", "name": PROMETHEUS_ACCOUNT,
                       "namespace": PROMETHEUS_NAMESPACE}]},
        _token_secret(f"{PROMETHEUS_ACCOUNT}-token", PROMETHEUS_NAMESPACE, PROMETHEUS_ACCOUNT),
    ]


def wait_for_node(cp: ClusterPaths, say: Say, timeout: float = 120) -> None:
    from kubernetes import client

    api = client.CoreV1Api(_api_client(cp))
    deadline = time.monotonic() + timeout
    condition = "not registered"
    while time.monotonic() < deadline:
        try:
            node = api.read_node(NODE)
            ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
            if ready is not None and ready.status == "True":
                say(f"node {NODE}: Ready ({node.status.node_info.kubelet_version}, "
                    f"{node.status.node_info.container_runtime_version})")
                return
            condition = f"{ready.reason}: {ready.message}" if ready else "no Ready condition"
        except client.ApiException as e:
            condition = f"{e.status} {e.reason}"
        time.sleep(1)
    raise StackError(f"node {NODE} did not become Ready within {timeout:.0f}s ({condition}); "
                     f"see {cp.logs / 'kubelet.log'}")


def node_row(cp: ClusterPaths) -> tuple[str, bool, str]:
    from kubernetes import client

    try:
        node = client.CoreV1Api(_api_client(cp)).read_node(NODE)
    except client.ApiException as e:
        return ("k8s node", False, f"{e.status} {e.reason}")
    ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
    ok = ready is not None and ready.status == "True"
    return ("k8s node", ok,
            f"{NODE} {'Ready' if ok else 'NotReady'}, {node.status.node_info.kubelet_version}, "
            f"API {API_SERVER}")


def _wait_for_token(api, name: str, namespace: str) -> str:
    from kubernetes import client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            data = api.read_namespaced_secret(name, namespace).data or {}
        except client.ApiException as e:
            if e.status != 404:
                raise
            data = {}
        if data.get("token"):
            return base64.b64decode(data["token"]).decode()
        time.sleep(0.5)
    raise StackError(f"the token controller filled no token into {namespace}/{name} "
                     "within 60s; see the kube-controller-manager log")


def ensure(cp: ClusterPaths, paths: StackPaths, say: Say) -> None:
    """Apply `objects` (server-side apply, so a second run changes nothing) and write the
    `ferryman` identity's kubeconfig."""
    from kubernetes import client, dynamic

    api_client = _api_client(cp)
    dyn = dynamic.DynamicClient(api_client)
    for manifest in objects(paths):
        resource = dyn.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        dyn.server_side_apply(resource, body=manifest, field_manager=FIELD_MANAGER,
                              force_conflicts=True)
    core = client.CoreV1Api(api_client)
    token = _wait_for_token(core, f"{SERVICE_ACCOUNT}-token", NAMESPACE)
    ca = (cp.pki / "ca.crt").read_text()
    cluster_pki.write_kubeconfig(cp.ferryman_kubeconfig, cluster_pki.kubeconfig(
        API_SERVER, ca, {"token": token}, namespace=NAMESPACE,
    ))
    say(f"namespace {NAMESPACE}: ServiceAccount {SERVICE_ACCOUNT} with Role {ROLE}, "
        f"imagePullSecret {PULL_SECRET} on ServiceAccount default; "
        f"kubeconfig {cp.ferryman_kubeconfig}")


def delete_all_pods(cp: ClusterPaths, say: Say, timeout: float = 90) -> None:
    """Let kubelet stop every pod, so the CNI plugins release what they set up."""
    from kubernetes import client

    api = client.CoreV1Api(_api_client(cp))
    pods = api.list_pod_for_all_namespaces().items
    for pod in pods:
        try:
            api.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                      grace_period_seconds=2)
        except client.ApiException as e:
            if e.status != 404:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and api.list_pod_for_all_namespaces().items:
        time.sleep(1)
    left = len(api.list_pod_for_all_namespaces().items)
    say(f"pods: {len(pods) - left} stopped by kubelet" + (f", {left} left" if left else ""))


def prometheus_jobs(paths: StackPaths, config_dir: Path) -> list[dict]:
    """The pod-discovery scrape job, when the test bed is up; [] otherwise.

    Prometheus runs in a container and reads its configuration folder: the CA and the
    `prometheus` ServiceAccount's token go there, beside prometheus.yml.
    """
    files = config_dir / "kubernetes"
    if not is_up(paths):
        for stale in ("ca.crt", "token"):
            (files / stale).unlink(missing_ok=True)
        return []
    from kubernetes import client

    cp = ClusterPaths.of(paths)
    core = client.CoreV1Api(_api_client(cp))
    token = _wait_for_token(core, f"{PROMETHEUS_ACCOUNT}-token", PROMETHEUS_NAMESPACE)
    files.mkdir(parents=True, exist_ok=True)
    (files / "ca.crt").write_text((cp.pki / "ca.crt").read_text())
    (files / "token").touch(mode=0o600)
    (files / "token").write_text(token)
    return [scrape_job("/etc/prometheus/kubernetes")]  # where the container mounts it


def scrape_job(files: str) -> dict:
    """Prometheus' pod discovery against the test bed; `files` holds `ca.crt` and `token`."""
    return {
        "job_name": "kubernetes-pods",
        # The pods' own `app` and `version` labels on their series win over target labels.
        "honor_labels": True,
        "kubernetes_sd_configs": [{
            "role": "pod",
            "api_server": API_SERVER,
            "authorization": {"credentials_file": f"{files}/token"},
            "tls_config": {"ca_file": f"{files}/ca.crt"},
        }],
        "relabel_configs": [
            {"source_labels": [_meta_annotation(SCRAPE_ANNOTATION)],
             "regex": "true", "action": "keep"},
            {"source_labels": ["__address__", _meta_annotation(PORT_ANNOTATION)],
             "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2",
             "target_label": "__address__"},
            {"source_labels": [_meta_annotation(PATH_ANNOTATION)],
             "regex": "(.+)", "target_label": "__metrics_path__"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def _meta_annotation(annotation: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in annotation)
    return f"__meta_kubernetes_pod_annotation_{cleaned}"


def traffic_targets(specs: list) -> list[str]:
    """The traffic generator's TARGETS entries of the Kubernetes apps: `app=main@IP:PORT/`
    for the app's Service and `app=preview@IP:PORT/` for `<service>-preview`, when the
    app's manifests pin their ClusterIPs (no cluster DNS here to find them by name)."""
    from tasks.platforms.kubernetes.manifests import load_manifests

    entries = []
    for spec in specs:
        target = spec.target
        if target.kind != "kubernetes" or target.manifests is None:
            continue
        objects = load_manifests(target.manifests, target.deployment, target.namespace,
                                 target.container).objects
        services = {o["metadata"]["name"]: o.get("spec") or {} for o in objects
                    if o["kind"] == "Service"}
        for kind, name in (("main", target.service), ("preview", f"{target.service}-preview")):
            service = services.get(name, {})
            ip, ports = service.get("clusterIP"), service.get("ports") or []
            if ip and ip != "None" and ports:
                entries.append(f"{spec.app}={kind}@{ip}:{ports[0]['port']}/")
    return entries
