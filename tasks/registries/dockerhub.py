"""Docker Hub: `docker.io/<namespace>/<name>`, credentials from a DockerRegistryCredentials
block (a personal or organisation access token as the password).

Docker Hub's registry API is `registry-1.docker.io` with bearer tokens from `auth.docker.io`;
`tasks.registries.api` answers that challenge. `registry.endpoint` puts another registry in
its place (the tests use the local one); the default is always Docker Hub itself.
"""

from __future__ import annotations

from tasks.registries.base import Destination, RegistryAuth, api_url_for, docker_block_auth
from tasks.registries.specs import DockerHubRegistrySpec

HOST = "docker.io"
API_URL = "https://registry-1.docker.io"


class DockerHubRegistry:
    """Docker Hub, or whatever `registry.endpoint` names in its place."""

    def __init__(self, spec: DockerHubRegistrySpec) -> None:
        self.spec = spec
        self.host = spec.endpoint or HOST
        self.name = "Docker Hub" if spec.endpoint is None else f"Docker Hub at {spec.endpoint}"

    def login(self) -> RegistryAuth | None:
        return docker_block_auth(self.spec.credentials_block, self.host,
                                 "registry.credentials_block")

    def destination(self, repository: str, auth: RegistryAuth | None) -> Destination:
        return Destination(
            registry=self.name,
            host=self.host,
            api_url=API_URL if self.spec.endpoint is None else api_url_for(self.spec.endpoint),
            path=f"{self.spec.namespace}/{repository}",
            auth=auth,
        )

    def prepare(self, destination: Destination) -> None:
        """Nothing: Docker Hub makes a repository in a namespace its user may push to."""

    def confirm(self, destination: Destination, tag: str, digest: str) -> None:
        """Nothing beyond the HEAD read-back every push makes."""
