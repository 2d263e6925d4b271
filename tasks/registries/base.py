"""What every registry kind offers the push step, and the values it answers with.

A registry kind (`generic.py`, `dockerhub.py`, `ecr.py`) knows how to log in, where an
image's repository lives, and what to do before and after the upload. The upload itself and
the checks around it (does the registry hold the image already, does a tag point elsewhere)
are the same for every kind: `tasks.images.push_image`, over `tasks.registries.api`.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from tasks.errors import SpecError

if TYPE_CHECKING:
    from tasks.registries.specs import RegistrySpec


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry. The password never appears in repr, logs or errors.

    `registry` is the host the Docker engine logs in to (and Swarm nodes pull from).
    """

    registry: str
    username: str
    password: SecretStr = field(repr=False)

    def docker_auth_config(self) -> dict[str, str]:
        """The `auth_config` mapping the docker SDK's push and pull take."""
        return {"username": self.username, "password": self.password.get_secret_value()}

    def redact(self, text: str) -> str:
        """`text` without the password, in clear or inside a basic-auth header value."""
        secret = self.password.get_secret_value()
        if not secret:
            return text
        basic = base64.b64encode(f"{self.username}:{secret}".encode()).decode()
        return text.replace(basic, "***").replace(secret, "***")


@dataclass(frozen=True)
class Destination:
    """Where one image goes, once its registry has logged in: all the push step needs.

    `registry` names the registry in messages; `host` starts the image references
    (`docker.io`, `127.0.0.1:5000`, `<account>.dkr.ecr.<region>.amazonaws.com`); `api_url`
    is the base of its distribution API; `path` is the repository in it (`acme/demo`).
    """

    registry: str
    host: str
    api_url: str
    path: str
    auth: RegistryAuth | None = field(default=None, repr=False)

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.path}"

    def redact(self, text: str) -> str:
        return self.auth.redact(text) if self.auth else text


class Registry(Protocol):
    """One registry kind, made from the spec's `registry` by `tasks.registries.get_registry`."""

    spec: RegistrySpec
    """The spec's `registry` section (extra tags, whether tags may move)."""
    name: str
    """How messages name the registry before a login told more."""

    def login(self) -> RegistryAuth | None:
        """The credentials to push with (and to pull with on the target); None for none."""
        ...

    def destination(self, repository: str, auth: RegistryAuth | None) -> Destination:
        """Where the image repository `repository` (the spec's `image.repository`) goes."""
        ...

    def prepare(self, destination: Destination) -> None:
        """Make the repository ready for a push (ECR creates it); nothing for most kinds."""
        ...

    def confirm(self, destination: Destination, tag: str, digest: str) -> None:
        """Check, after the upload, that the registry serves `digest` under `tag`."""
        ...


def is_loopback(host: str) -> bool:
    """Whether `host[:port]` is on this machine (the Docker engine talks plain HTTP to those)."""
    name = host.rsplit(":", 1)[0]  # the spec's hosts are name[:port], no IPv6 literals
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def api_url_for(host: str) -> str:
    """The distribution API's base URL for a registry host.

    Plain HTTP for loopback hosts, HTTPS otherwise: what the Docker engine itself does with
    its default insecure registries (127.0.0.0/8), so the checks and the upload agree.
    """
    return f"{'http' if is_loopback(host) else 'https'}://{host}"


def docker_block_auth(
    block_name: str | None, registry: str, field_path: str
) -> RegistryAuth | None:
    """Credentials from a prefect-docker DockerRegistryCredentials block, or None without one.

    Raises SpecError naming `field_path` and the block (never its contents) when it is missing.
    """
    if block_name is None:
        return None
    from prefect_docker.credentials import DockerRegistryCredentials

    try:
        block = DockerRegistryCredentials.load(block_name)
    except ValueError as e:
        raise SpecError(
            f"{field_path}: no DockerRegistryCredentials block named {block_name!r} on the "
            f"Prefect server ({e.__class__.__name__})"
        ) from None
    return RegistryAuth(registry=registry, username=block.username, password=block.password)
