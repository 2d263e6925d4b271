"""Ferryman's side of the Kubernetes API: connecting as the spec says, reading objects as
the API returns them (plain dicts), changing them with JSON patches pinned to what was read,
server-side apply, and the API's answers turned into Ferryman's errors (kopf's
`_cogs/clients/errors.py` does the same at its client boundary).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import urllib3.exceptions
import urllib3.response
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import dynamic

from tasks.errors import (
    FerrymanError,
    SpecError,
    TargetConflictError,
    TargetError,
    TargetUnavailableError,
)
from tasks.platforms.kubernetes.spec import KubernetesTargetSpec

FIELD_MANAGER = "ferryman"
CONFLICT_TRIES = 5
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def api_message(error: k8s.ApiException) -> str:
    """The API's own words (its Status object's message), else the HTTP reason."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(error.reason or error.body or "no message")


def api_error(error: k8s.ApiException, doing: str, verb: str, resource: str,
              namespace: str) -> FerrymanError:
    """An API answer as one of Ferryman's errors: 409 is a conflict to read again and retry;
    5xx and 429 are transient; 403 names the RBAC verb and resource that are missing;
    anything else (422 invalid, 400, 401, 404) is the API's message, at once."""
    status, message = error.status or 0, api_message(error)
    if status == 409:
        return TargetConflictError(f"conflict while trying to {doing}: {message}")
    if status == 429 or status >= 500:
        return TargetUnavailableError(
            f"the Kubernetes API could not {doing} ({status} {error.reason}): {message}")
    if status == 403:
        return TargetError(
            f"Kubernetes forbids this identity to {verb} {resource} in namespace "
            f"{namespace} (needed to {doing}; grant the verb in its Role): {message}")
    if status == 401:
        return TargetError(f"the Kubernetes API refused the credentials (401) trying to "
                           f"{doing}: {message}")
    return TargetError(f"Kubernetes refused to {doing} ({status} {error.reason}): {message}")


# -- connecting ----------------------------------------------------------------------------


def connect(target: KubernetesTargetSpec) -> tuple[k8s.ApiClient, str | None]:
    """An API client as the spec says, and the namespace its context names (if any)."""
    try:
        if target.in_cluster:
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
            namespace = (SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
                         if SERVICE_ACCOUNT_NAMESPACE.exists() else None)
            return k8s.ApiClient(configuration), namespace
        if target.cluster_config_block is not None:
            return _from_block(target)
        file = str(target.kubeconfig) if target.kubeconfig else None
        if target.kubeconfig is not None and not target.kubeconfig.is_file():
            raise TargetError(f"target.kubeconfig: {target.kubeconfig} does not exist")
        contexts, current = k8s_config.list_kube_config_contexts(config_file=file)
        context = next((c for c in contexts if c["name"] == target.context), None) \
            if target.context else current
        if target.context and context is None:
            raise SpecError(f"target.context: no context {target.context!r} in the "
                            f"kubeconfig (contexts: {[c['name'] for c in contexts]})")
        api = k8s_config.new_client_from_config(config_file=file, context=target.context)
        return api, (context or {}).get("context", {}).get("namespace")
    except k8s_config.ConfigException as e:
        raise TargetError(f"cannot configure the Kubernetes client: {e}") from e


def _from_block(target: KubernetesTargetSpec) -> tuple[k8s.ApiClient, str | None]:
    from prefect_kubernetes.credentials import KubernetesClusterConfig

    try:
        block = KubernetesClusterConfig.load(target.cluster_config_block)
    except ValueError as e:
        raise SpecError(f"target.cluster_config_block: no KubernetesClusterConfig block "
                        f"named {target.cluster_config_block!r} on the Prefect server "
                        f"({e.__class__.__name__})") from None
    name = target.context or block.context_name
    context = next((c for c in block.config.get("contexts") or [] if c.get("name") == name),
                   {})
    api = k8s_config.new_client_from_config_dict(block.config, context=name)
    return api, (context.get("context") or {}).get("namespace")


class KubernetesApi:
    """The API calls of one namespace that the target makes, each a plain dict in and out."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.client = api_client
        self.namespace = namespace
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self._dynamic: dynamic.DynamicClient | None = None

    # -- talking to the API ----------------------------------------------------------------

    def call(self, fn: Callable, doing: str, verb: str, resource: str):
        """Call the API; its errors become Ferryman's (see `api_error`)."""
        try:
            response = fn()
        except k8s.ApiException as e:
            raise api_error(e, doing, verb, resource, self.namespace) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise TargetUnavailableError(
                f"cannot reach the Kubernetes API to {doing}: {e}") from e
        if isinstance(response, urllib3.response.BaseHTTPResponse):
            return json.loads(response.data) if response.data else None
        return None

    def _endpoints(self, kind: str):
        """(read, patch, delete, resource) of a kind Ferryman changes."""
        if kind == "deployment":
            return (self.apps.read_namespaced_deployment, self.apps.patch_namespaced_deployment,
                    self.apps.delete_namespaced_deployment, "deployments")
        return (self.core.read_namespaced_service, self.core.patch_namespaced_service,
                self.core.delete_namespaced_service, "services")

    def read(self, kind: str, name: str) -> dict | None:
        """The object as the API returns it (a plain dict), or None when there is none."""
        read, _, _, resource = self._endpoints(kind)
        try:
            return self.call(lambda: read(name, self.namespace, _preload_content=False),
                              f"read {kind} {name}", "get", resource)
        except TargetError as e:
            if isinstance(e.__cause__, k8s.ApiException) and e.__cause__.status == 404:
                return None
            raise

    def modify(self, kind: str, name: str, change: Callable[[dict], list[dict]],
                doing: str) -> dict:
        """Read the object, compute a JSON patch from it and send it with the read's
        resourceVersion; on a conflict (someone changed it in between), read and compute
        again. `change` returns no operations when there is nothing to do."""
        _, patch, _, resource = self._endpoints(kind)
        for attempt in range(1, CONFLICT_TRIES + 1):
            current = self.read(kind, name)
            if current is None:
                raise TargetError(f"{kind} {name} does not exist in namespace "
                                  f"{self.namespace}; cannot {doing}")
            operations = change(current)
            if not operations:
                return current
            pinned = [{"op": "replace", "path": "/metadata/resourceVersion",
                       "value": current["metadata"]["resourceVersion"]}, *operations]
            try:
                return self.call(
                    lambda body=pinned: patch(name, self.namespace, body,
                                              field_manager=FIELD_MANAGER,
                                              _preload_content=False),
                    doing, "patch", resource)
            except TargetConflictError:
                if attempt == CONFLICT_TRIES:
                    raise
                time.sleep(0.2 * attempt)  # a controller's status write passes quickly
        raise AssertionError("unreachable")

    def delete(self, kind: str, name: str) -> None:
        _, _, delete, resource = self._endpoints(kind)
        try:
            self.call(lambda: delete(name, self.namespace, propagation_policy="Background",
                                      _preload_content=False),
                       f"delete {kind} {name}", "delete", resource)
        except TargetError as e:
            if not (isinstance(e.__cause__, k8s.ApiException) and e.__cause__.status == 404):
                raise

    def apply(self, manifest: dict) -> None:
        """Server-side apply (field manager `ferryman`) of one object."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        resource_name = f"{kind.lower()}s"

        def apply():
            if self._dynamic is None:  # reads the API's discovery documents once
                self._dynamic = dynamic.DynamicClient(self.client)
            resource = self._dynamic.resources.get(api_version=manifest["apiVersion"],
                                                   kind=kind)
            return self._dynamic.server_side_apply(
                resource, body=manifest, namespace=self.namespace,
                field_manager=FIELD_MANAGER, force_conflicts=True)

        try:
            self.call(apply, f"apply {kind} {name}", "patch (server-side apply)",
                       resource_name)
        except (dynamic.exceptions.ResourceNotFoundError,
                dynamic.exceptions.ResourceNotUniqueError) as e:
            raise SpecError(f"target.manifests: the cluster has no kind {kind} in "
                            f"{manifest['apiVersion']}: {e}") from None

    def pod_names(self) -> set[str]:
        """The names of every pod in the namespace."""
        pods = self.call(lambda: self.core.list_namespaced_pod(self.namespace,
                                                               _preload_content=False),
                         "list pods", "list", "pods")["items"]
        return {p["metadata"]["name"] for p in pods}

    def pods_of(self, deployment: dict) -> list[dict]:
        """The pods of a Deployment's own ReplicaSets (not of another Deployment whose pods
        its selector also matches, like a canary's)."""
        labels = deployment["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        uid = deployment["metadata"]["uid"]
        sets = self.call(
            lambda: self.apps.list_namespaced_replica_set(
                self.namespace, label_selector=selector, _preload_content=False),
            "list replicasets", "list", "replicasets")["items"]
        owned = {rs["metadata"]["uid"] for rs in sets
                 if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))}
        pods = self.call(
            lambda: self.core.list_namespaced_pod(
                self.namespace, label_selector=selector, _preload_content=False),
            "list pods", "list", "pods")["items"]
        return [p for p in pods
                if any(o.get("uid") in owned for o in p["metadata"].get("ownerReferences", []))]

