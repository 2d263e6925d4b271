"""Registries: one module per `registry.kind` behind the `Registry` protocol of `base.py`.

`load_auth` is what the flows call before a push and a deploy; `get_registry` is the factory
the push step uses. No secret lives in a spec file: credentials come from Prefect blocks (or,
for ECR, boto3's standard chain).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.errors import SpecError
from tasks.registries.base import Destination, Registry, RegistryAuth

if TYPE_CHECKING:
    from tasks.registries.specs import RegistrySpec

__all__ = ["Destination", "Registry", "RegistryAuth", "get_registry", "load_auth"]


def get_registry(spec: RegistrySpec) -> Registry:
    """The Registry for a spec's `registry.kind`; an unknown kind is an error, not a default."""
    if spec.kind == "generic":
        from tasks.registries.generic import GenericRegistry

        return GenericRegistry(spec)
    if spec.kind == "dockerhub":
        from tasks.registries.dockerhub import DockerHubRegistry

        return DockerHubRegistry(spec)
    if spec.kind == "ecr":
        from tasks.registries.ecr import EcrRegistry

        return EcrRegistry(spec)
    raise SpecError(f"registry.kind: no registry of kind {spec.kind!r}")


def load_auth(spec: RegistrySpec) -> RegistryAuth | None:
    """Log in to the spec's registry: the credentials to push with and for the target to pull.

    Called by the release and rollback flows and `ferryman status`. Raises SpecError when a
    credentials block is missing (naming the block, not its contents), RegistryAuthError
    when ECR refuses the AWS credentials, RegistryUnavailableError when it cannot be reached.
    """
    return get_registry(spec).login()
