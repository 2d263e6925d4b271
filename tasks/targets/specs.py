"""The `target:` models of the release spec, one per `target.kind`, and what the spec check
reads from the orchestration files they name (`declared_replicas`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tasks.durations import Seconds
from tasks.errors import SpecError
from tasks.fields import DNS_LABEL, SpecModel, existing_path


class UpdateConfigSpec(SpecModel):
    """Swarm's update_config; overrides the stack file's `deploy.update_config` key by key."""

    parallelism: Annotated[int, Field(ge=0)] | None = None
    delay: Seconds | None = None
    failure_action: Literal["pause", "continue", "rollback"] | None = None
    monitor: Seconds | None = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    order: Literal["stop-first", "start-first"] | None = None


class SwarmTargetSpec(SpecModel):
    """A Docker Swarm service, created from one service of a compose v3 stack file."""

    kind: Literal["swarm"]
    stack_file: Path
    service: Annotated[str, Field(pattern=DNS_LABEL)]
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    metrics_path: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    docker_host: str | None = None
    deploy_timeout: Annotated[Seconds, Field(gt=0)] = 180.0
    update_config: UpdateConfigSpec | None = None

    @field_validator("stack_file")
    @classmethod
    def _stack_file_exists(cls, value: Path, info: ValidationInfo) -> Path:
        return existing_path(value, info, "stack file", is_dir=False)


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


TARGET_KINDS = ("swarm", "kubernetes")


def kubernetes_names(value: object) -> object:
    """`deployment` defaults to the app's name and `service` to the deployment's."""
    if not isinstance(value, dict) or not isinstance(value.get("target"), dict):
        return value
    target = value["target"]
    if target.get("kind") != "kubernetes":
        return value
    deployment = target.get("deployment", value.get("app"))
    target = {**target, "deployment": deployment, "service": target.get("service", deployment)}
    return {**value, "target": {k: v for k, v in target.items() if v is not None}}


TargetSpec = Annotated[SwarmTargetSpec | KubernetesTargetSpec, Field(discriminator="kind")]
"""Where the app runs: one model per `target.kind`."""


def declared_replicas(target: TargetSpec) -> int | None:
    """The stable size the target's orchestration files give (the stack file's
    `deploy.replicas`, the manifests' Deployment), None when only the cluster knows it.
    Raises SpecError naming `target` for a file Ferryman cannot apply. Touches no platform."""
    if isinstance(target, SwarmTargetSpec):
        from tasks.targets.compose import load_service

        try:
            definition = load_service(target.stack_file, target.service)
        except SpecError as e:
            raise SpecError(f"target: {e}") from None
        return definition.service.deploy.replicas
    if target.manifests is None:
        return None  # the size is the cluster's: the router checks the weights against it
    from tasks.targets.manifests import load_manifests

    return load_manifests(target.manifests, target.deployment, target.namespace,
                          target.container).replicas
