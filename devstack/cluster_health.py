"""Whether the Kubernetes test bed is up: `is_up` when its record says `up` started any of
its `COMPONENTS` and its API server answers `readyz` to the admin's certificate
(`api_ready`); `http_get` is the GET its readiness checks use. devstack/cluster.py starts
and stops the test bed; devstack/stack.py and devstack/cluster_access.py ask here whether
it is up (Prometheus' pod job, the traffic generator's Kubernetes targets) without
importing it.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from devstack.cluster_network import API_SERVER
from devstack.settings import ClusterPaths, StackPaths

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
              "containerd", "kubelet", "kube-proxy")


def http_get(url: str, context: ssl.SSLContext | None = None,
             timeout: float = 2) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""


def _admin_tls(cp: ClusterPaths) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cp.pki / "ca.crt"))
    context.load_cert_chain(cp.pki / "admin.crt", cp.pki / "admin.key")
    return context


def api_ready(cp: ClusterPaths) -> bool:
    if not (cp.pki / "admin.crt").exists():
        return False
    return http_get(f"{API_SERVER}/readyz", _admin_tls(cp))[0] == 200


def started_any(record: dict) -> bool:
    return any(f"{name}_pid" in record for name in COMPONENTS)


def is_up(paths: StackPaths) -> bool:
    """True when `up` started the test bed and its API server answers."""
    cp = ClusterPaths.of(paths)
    return started_any(cp.load_record()) and api_ready(cp)
