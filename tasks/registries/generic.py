"""Any OCI registry at `registry.url`, with basic auth from a DockerRegistryCredentials block
or none."""

from __future__ import annotations

from tasks.registries.base import Destination, RegistryAuth, api_url_for, docker_block_auth
from tasks.registries.specs import GenericRegistrySpec


class GenericRegistry:
    """A registry that needs nothing before a push and nothing after it but the checks."""

    def __init__(self, spec: GenericRegistrySpec) -> None:
        self.spec = spec
        self.name = spec.url

    def login(self) -> RegistryAuth | None:
        return docker_block_auth(self.spec.credentials_block, self.spec.url,
                                 "registry.credentials_block")

    def destination(self, repository: str, auth: RegistryAuth | None) -> Destination:
        return Destination(
            registry=self.name, host=self.spec.url, api_url=api_url_for(self.spec.url),
            path=repository, auth=auth,
        )

    def prepare(self, destination: Destination) -> None:
        """Nothing: a distribution registry makes a repository on its first push."""

    def confirm(self, destination: Destination, tag: str, digest: str) -> None:
        """Nothing beyond the HEAD read-back every push makes."""
