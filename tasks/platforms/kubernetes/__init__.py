"""Kubernetes: an app is a Deployment behind a Service, reached with the official client."""

from __future__ import annotations

from tasks.platforms.base import Platform
from tasks.platforms.kubernetes.replicas import KubernetesReplicasRouter
from tasks.platforms.kubernetes.spec import (
    KubernetesTargetSpec,
    declared_replicas,
    query_variables,
    with_defaults,
)
from tasks.platforms.kubernetes.target import KubernetesTarget

PLATFORM = Platform(
    kind="kubernetes", spec=KubernetesTargetSpec, target=KubernetesTarget,
    routers={"replicas": KubernetesReplicasRouter},
    declared_replicas=declared_replicas, query_variables=query_variables,
    with_defaults=with_defaults,
)
