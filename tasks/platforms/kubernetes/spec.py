"""The `target: {kind: kubernetes}` model of the release spec, and what the spec check and
the analysis read from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tasks.durations import Seconds
from tasks.fields import DNS_LABEL, SpecModel, existing_path
from tasks.platforms.kubernetes.manifests import load_manifests

K8S_NAME = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
"""A DNS subdomain, as Kubernetes names Deployments."""


class KubernetesTargetSpec(SpecModel):
    """A Kubernetes Deployment behind a Service, reached with the official client.

    How to connect: `kubeconfig` (a file), `in_cluster` (the pod's ServiceAccount) or
    `cluster_config_block` (prefect-kubernetes' KubernetesClusterConfig); at most one, and
    none means the kubeconfig kubectl would use (KUBECONFIG, ~/.kube/config).
    `deployment` and `service` default to the app's name.
    """

    kind: Literal["kubernetes"]
    kubeconfig: Path | None = None
    """Resolved from the spec's folder; read when Ferryman connects, not when the spec is
    loaded (the file is a credential a worker may only get at run time)."""
    in_cluster: bool = False
    cluster_config_block: str | None = None
    context: str | None = None
    """The kubeconfig's context (the block's `context_name`, else the current context)."""
    namespace: Annotated[str, Field(pattern=DNS_LABEL)] | None = None
    """Default: the context's namespace (in a cluster, the pod's own), else `default`."""
    deployment: Annotated[str, Field(pattern=K8S_NAME)]
    service: Annotated[str, Field(pattern=DNS_LABEL)]
    container: Annotated[str, Field(pattern=DNS_LABEL)] | None = None
    """The container whose image is released; default: the pod's first."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    metrics_path: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    manifests: Path | None = None
    """A folder of YAML manifests (`deployments/<app>/k8s/`), applied with server-side apply
    when the app's Deployment does not exist yet."""
    deploy_timeout: Annotated[Seconds, Field(gt=0)] = 180.0

    @field_validator("kubeconfig")
    @classmethod
    def _from_the_specs_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is not None and base is not None and not value.is_absolute():
            value = Path(base) / value
        return value.resolve() if value is not None else None

    @field_validator("manifests")
    @classmethod
    def _manifests_exist(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else existing_path(value, info, "manifests folder",
                                                     is_dir=True)

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> KubernetesTargetSpec:
        given = [name for name, on in (("kubeconfig", self.kubeconfig is not None),
                                       ("in_cluster", self.in_cluster),
                                       ("cluster_config_block",
                                        self.cluster_config_block is not None)) if on]
        if len(given) > 1:
            raise ValueError(f"give one way to reach the cluster, not {' and '.join(given)}")
        return self


def with_defaults(target: dict, app: str) -> dict:
    """`deployment` defaults to the app's name and `service` to the deployment's."""
    deployment = target.get("deployment", app)
    target = {**target, "deployment": deployment, "service": target.get("service", deployment)}
    return {k: v for k, v in target.items() if v is not None}


def declared_replicas(settings: KubernetesTargetSpec) -> int | None:
    """The stable size the manifests' Deployment gives, None when only the cluster knows it
    (the router checks the weights against it then). Touches no cluster."""
    if settings.manifests is None:
        return None
    return load_manifests(settings.manifests, settings.deployment, settings.namespace,
                          settings.container).replicas


def query_variables(settings: KubernetesTargetSpec) -> dict[str, str]:
    """What a metric query's `${service}` and `${namespace}` stand for on Kubernetes."""
    return {"service": settings.service, "namespace": settings.namespace or ""}
