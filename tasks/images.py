"""Images: build with the docker SDK, push to the spec's registry, return the digest to deploy."""

from __future__ import annotations

import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from tasks.errors import (
    BuildError,
    DockerEngineUnavailable,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
)
from tasks.registries import RegistryAuth
from tasks.spec import ReleaseSpec

LOG_TAIL_LINES = 25
_AUTH_REFUSED = ("unauthorized", "authentication required", "denied", "no basic auth")
_TRANSIENT = (
    "connection refused", "dial tcp", "i/o timeout", "timeout", "eof", "toomanyrequests",
    "429", "500 internal", "502", "503", "504", "connection reset", "no such host",
)


@dataclass(frozen=True)
class BuiltImage:
    """An image built locally: its ID and the registry tag it carries."""

    image_id: str
    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class PushedImage:
    """An image the registry holds; `reference` pins it by digest for the deploy."""

    repository: str
    tag: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"


def docker_client(base_url: str | None = None) -> docker.DockerClient:
    """A docker SDK client for builds and pushes (DOCKER_HOST and friends when no URL is given)."""
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=300)
        return docker.from_env(timeout=300)
    except docker.errors.DockerException as e:
        raise DockerEngineUnavailable(f"cannot reach the Docker engine: {e}") from e


def _git_revision(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def oci_labels(spec: ReleaseSpec, version: str) -> dict[str, str]:
    """OCI annotations for the image. No build time: the same inputs give the same digest."""
    labels = {
        "org.opencontainers.image.title": spec.app,
        "org.opencontainers.image.version": version,
    }
    revision = _git_revision(spec.image.context)
    if revision:
        labels["org.opencontainers.image.revision"] = revision
    if spec.source:
        labels["org.opencontainers.image.source"] = str(spec.source)
    return labels


def build_image(
    spec: ReleaseSpec,
    version: str,
    build_args: dict[str, str],
    client: docker.DockerClient,
    log: Callable[[str], None] = lambda line: None,
) -> BuiltImage:
    """`docker build` the spec's context as `<registry>/<repository>:<version>`.

    Build args: the spec's, then `build_args` over them; VERSION is set to `version` unless
    given. Raises BuildError with the last lines of the build log when the build fails.
    """
    repository = f"{spec.registry.url}/{spec.image.repository}"
    args = {"VERSION": version, **spec.image.build_args, **build_args}
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    image_id = None
    try:
        stream = client.api.build(
            path=str(spec.image.context),
            dockerfile=spec.image.dockerfile,
            tag=f"{repository}:{version}",
            buildargs=args,
            labels=oci_labels(spec, version),
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        tail.append(line)
                        log(line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                tail.append(chunk["error"].strip())
                raise BuildError(
                    f"docker build of {repository}:{version} failed: {chunk['error'].strip()}\n"
                    "last lines of the build log:\n  " + "\n  ".join(tail)
                )
    except docker.errors.APIError as e:
        if e.status_code and e.status_code >= 500:
            raise DockerEngineUnavailable(f"docker build failed in the engine: {e}") from e
        raise BuildError(f"docker build of {repository}:{version} refused: {e.explanation}") from e
    except docker.errors.DockerException as e:
        raise DockerEngineUnavailable(f"cannot reach the Docker engine to build: {e}") from e
    if image_id is None:
        raise BuildError(
            f"docker build of {repository}:{version} reported no image ID; last lines:\n  "
            + "\n  ".join(tail)
        )
    return BuiltImage(image_id=image_id, repository=repository, tag=version)


def _push_error(message: str, image: str, registry: str) -> Exception:
    lowered = message.lower()
    if any(word in lowered for word in _AUTH_REFUSED):
        return RegistryAuthError(
            f"registry {registry} refused the credentials for {image}: {message}"
        )
    if any(word in lowered for word in _TRANSIENT):
        return RegistryUnavailableError(
            f"registry {registry} unavailable pushing {image}: {message}"
        )
    return RegistryError(f"registry {registry} rejected {image}: {message}")


def push_image(
    built: BuiltImage,
    registry: str,
    auth: RegistryAuth | None,
    client: docker.DockerClient,
    log: Callable[[str], None] = lambda line: None,
) -> PushedImage:
    """Push a built image and return it pinned by the digest the registry reported.

    Raises RegistryAuthError (permanent) when the credentials are refused,
    RegistryUnavailableError (transient) when the registry is down or throttling, and
    RegistryError otherwise. No message carries the password.
    """
    secret = auth.password.get_secret_value() if auth else None

    def redact(text: str) -> str:
        return text.replace(secret, "***") if secret else text

    digest = None
    layers_pushed = layers_present = 0
    try:
        stream = client.api.push(
            built.repository,
            tag=built.tag,
            stream=True,
            decode=True,
            auth_config=auth.docker_auth_config() if auth else None,
        )
        for chunk in stream:
            if "error" in chunk:
                raise _push_error(redact(chunk["error"]), built.reference, registry)
            status = chunk.get("status", "")
            if status == "Pushed":
                layers_pushed += 1
            elif status == "Layer already exists":
                layers_present += 1
            if "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
    except docker.errors.APIError as e:
        raise _push_error(redact(str(e.explanation or e)), built.reference, registry) from None
    except docker.errors.DockerException as e:
        raise DockerEngineUnavailable(f"cannot reach the Docker engine to push: {e}") from None
    if digest is None:
        raise RegistryError(f"registry {registry} reported no digest for {built.reference}")
    log(
        f"pushed {built.reference}: {layers_pushed} layer(s) uploaded, "
        f"{layers_present} already present, digest {digest}"
    )
    return PushedImage(repository=built.repository, tag=built.tag, digest=digest)
