"""Registry credentials, read from Prefect blocks so that no secret lives in a spec file."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from tasks.errors import SpecError
from tasks.spec import RegistrySpec


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry. The password never appears in repr, logs or errors."""

    registry: str
    username: str
    password: SecretStr = field(repr=False)

    def docker_auth_config(self) -> dict[str, str]:
        """The `auth_config` mapping the docker SDK's push and pull take."""
        return {"username": self.username, "password": self.password.get_secret_value()}


def load_auth(registry: RegistrySpec) -> RegistryAuth | None:
    """Load the spec's DockerRegistryCredentials block (prefect-docker), or None if it has none.

    Called by the release flow before push and deploy. Raises SpecError when the block is
    missing, naming the block and not its contents.
    """
    if registry.credentials_block is None:
        return None
    from prefect_docker.credentials import DockerRegistryCredentials

    try:
        block = DockerRegistryCredentials.load(registry.credentials_block)
    except ValueError as e:
        raise SpecError(
            f"registry.credentials_block: no DockerRegistryCredentials block named "
            f"{registry.credentials_block!r} on the Prefect server ({e.__class__.__name__})"
        ) from None
    return RegistryAuth(
        registry=registry.url, username=block.username, password=block.password
    )
