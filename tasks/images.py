"""Images: build with the docker SDK, push to the spec's registry, return the digest to deploy.

The push is the same for every registry kind: ask the registry's API what each tag points at
now, upload only what it lacks (nothing when it holds the image already), refuse to move a
tag onto another image unless the spec allows it, and read the digest back. The kind's
module (`tasks.registries`) supplies the login, the repository's address and, for ECR, the
repository itself and the read-back.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from tasks.errors import (
    BuildError,
    DockerEngineUnavailable,
    ImageNotFoundError,
    ImageTooLargeError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    RepositoryNotFoundError,
    TagConflictError,
)
from tasks.registries import Destination, Registry, RegistryAuth
from tasks.registries.api import RegistryAPI
from tasks.spec import ReleaseSpec

LOG_TAIL_LINES = 25
MAX_WAITS = 3
"""Retry-After answers the push step honours itself before it leaves the rest to Prefect."""
LONGEST_WAIT = 60.0
"""A Retry-After longer than this is not waited for inside the step (Prefect retries later)."""
# What the Docker engine says when the registry refused a push, by the error it becomes.
# Status codes are matched as whole words: a digest's hex must not look like a 413 or 503.
_TOO_LARGE = re.compile(r"\b413\b|too large")
_NO_REPOSITORY = re.compile(
    r"name unknown|repository name not known|repositorynotfound|repository does not exist"
)
_TAG_LOCKED = re.compile(r"cannot be overwritten|tag invalid|immutable")
_AUTH_REFUSED = re.compile(r"unauthorized|authentication required|denied|no basic auth")
ENGINE_GONE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)
"""What the docker SDK lets through, unwrapped, when the engine goes away mid-call: requests'
and urllib3's errors and the socket's own (a restart mid-push breaks the streamed answer).
They are not DockerException, so each docker call below names them to make them transient."""
_TRANSIENT = re.compile(
    r"connection refused|dial tcp|i/o timeout|timeout|\beof\b|toomanyrequests|"
    r"\b(429|500|502|503|504)\b|connection reset|no such host"
)


@dataclass(frozen=True)
class BuiltImage:
    """An image built locally: its ID, and `image.repository:version` as its local tag.

    The push step tags it for the registry: ECR's host is only known after a login.
    """

    image_id: str
    repository: str
    tag: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class PushedImage:
    """An image the registry holds; `reference` pins it by digest for the deploy.

    `uploaded` is False when the registry held the image under every tag already and
    nothing was sent; `layers_uploaded` counts the layers the registry lacked.
    """

    repository: str
    tag: str
    digest: str
    extra_tags: tuple[str, ...] = ()
    uploaded: bool = True
    layers_uploaded: int = 0

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"


def docker_client(base_url: str | None = None) -> docker.DockerClient:
    """A docker SDK client for builds and pushes (DOCKER_HOST and friends when no URL is given)."""
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=300)
        return docker.from_env(timeout=300)
    except (docker.errors.DockerException, *ENGINE_GONE) as e:
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
    """`docker build` the spec's context as `<image.repository>:<version>`.

    Build args: the spec's, then `build_args` over them; VERSION is set to `version` unless
    given. Raises BuildError with the last lines of the build log when the build fails.
    """
    repository = spec.image.repository
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
    except (docker.errors.DockerException, *ENGINE_GONE) as e:
        raise DockerEngineUnavailable(f"cannot reach the Docker engine to build: {e}") from e
    if image_id is None:
        raise BuildError(
            f"docker build of {repository}:{version} reported no image ID; last lines:\n  "
            + "\n  ".join(tail)
        )
    return BuiltImage(image_id=image_id, repository=repository, tag=version)


def _push_error(message: str, image: str, registry: str) -> Exception:
    """The error for what the Docker engine reported while pushing `image`."""
    lowered = message.lower()
    if _TOO_LARGE.search(lowered):
        return ImageTooLargeError(f"registry {registry} refused {image} as too large: {message}")
    if _NO_REPOSITORY.search(lowered):
        return RepositoryNotFoundError(
            f"registry {registry} has no repository for {image}: {message}"
        )
    if _TAG_LOCKED.search(lowered):
        return TagConflictError(f"registry {registry} will not move the tag of {image}: {message}")
    if _AUTH_REFUSED.search(lowered):
        return RegistryAuthError(
            f"registry {registry} refused the credentials for {image}: {message}"
        )
    if _TRANSIENT.search(lowered):
        return RegistryUnavailableError(
            f"registry {registry} unavailable pushing {image}: {message}"
        )
    return RegistryError(f"registry {registry} rejected {image}: {message}")


def push_image(
    built: BuiltImage,
    registry: Registry,
    auth: RegistryAuth | None,
    client: docker.DockerClient,
    log: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
) -> PushedImage:
    """Push a built image under its version and `registry.extra_tags`; return it by digest.

    Called by the push step. `auth` comes from `tasks.registries.load_auth` (None logs in
    here). A registry that answers 429 or 5xx with Retry-After is waited for as asked, up to
    MAX_WAITS times and LONGEST_WAIT seconds each; other transient failures are raised at
    once for Prefect's retries. Raises RegistryAuthError, RepositoryNotFoundError,
    ImageTooLargeError, TagConflictError or RegistryError (permanent), and
    RegistryUnavailableError or DockerEngineUnavailable (transient). No message carries the
    password.
    """
    if auth is None:
        auth = registry.login()
    waits = 0
    while True:
        try:
            return _push(built, registry, registry.destination(built.repository, auth),
                         client, log)
        except RegistryUnavailableError as e:
            wait = e.retry_after
            if wait is None or wait > LONGEST_WAIT or waits >= MAX_WAITS:
                raise
            waits += 1
            log(f"{e}; waiting {wait:g} s as the registry asked ({waits} of {MAX_WAITS})")
            sleep(wait)


def _repo_digests(client: docker.DockerClient, image_id: str) -> set[str]:
    """The manifest digests the engine recorded for the image on earlier pushes and pulls."""
    try:
        attrs = client.api.inspect_image(image_id)
    except docker.errors.ImageNotFound:
        raise BuildError(f"image {image_id} is no longer in the Docker engine") from None
    except (docker.errors.DockerException, *ENGINE_GONE) as e:
        raise DockerEngineUnavailable(f"cannot reach the Docker engine: {e}") from None
    return {entry.split("@", 1)[1] for entry in attrs.get("RepoDigests") or [] if "@" in entry}


def _held(api: RegistryAPI, tag: str, image_id: str, known: set[str]) -> tuple[str | None, bool]:
    """What `tag` points at in the registry, and whether that is the image `image_id`.

    A digest the engine recorded for the image settles it with one HEAD; otherwise the
    manifest's config digest (the image ID) is compared.
    """
    digest = api.digest(tag)
    if digest is None or digest in known:
        return digest, digest is not None
    manifest = api.manifest(digest)
    return digest, manifest is not None and manifest.config == image_id


def _push(
    built: BuiltImage,
    registry: Registry,
    destination: Destination,
    client: docker.DockerClient,
    log: Callable[[str], None],
) -> PushedImage:
    repository, redact = destination.repository, destination.redact
    tags = [built.tag, *(t for t in registry.spec.extra_tags if t != built.tag)]
    registry.prepare(destination)
    known = _repo_digests(client, built.image_id)
    with RegistryAPI(destination) as api:
        to_push: list[str] = []
        held_digest = None
        for tag in tags:
            digest, same = _held(api, tag, built.image_id, known)
            if tag == built.tag and same:
                held_digest = digest
            if same:
                continue
            if digest is not None and not registry.spec.may_overwrite(tag):
                raise TagConflictError(
                    f"registry {destination.registry}: tag {repository}:{tag} points at "
                    f"{digest}, another image than {built.reference} ({built.image_id}); "
                    "set registry.allow_tag_overwrite to move it"
                )
            if digest is not None:
                log(f"moving tag {repository}:{tag} off {digest} (allowed by the spec)")
            to_push.append(tag)
        if not to_push:
            log(f"registry {destination.registry} already holds {repository}@{held_digest} "
                f"as {', '.join(tags)}: nothing uploaded")
            return PushedImage(repository, built.tag, held_digest, tuple(tags[1:]), False, 0)
        pushed_digest, layers = None, 0
        for tag in to_push:
            digest, uploaded = _engine_push(built, destination, tag, client, redact)
            if pushed_digest not in (None, digest):
                raise RegistryError(
                    f"registry {destination.registry} gave {repository}:{tag} the digest "
                    f"{digest}, and an earlier tag of the same image {pushed_digest}"
                )
            pushed_digest, layers = digest, layers + uploaded
        digest = held_digest or pushed_digest
        read_back = api.digest(built.tag)
    if read_back != digest:
        raise RegistryError(
            f"registry {destination.registry} serves {read_back} as {repository}:{built.tag}, "
            f"not the pushed {digest}: did another push overwrite it?"
        )
    registry.confirm(destination, built.tag, digest)
    log(f"pushed {repository}:{', '.join(to_push)}: {layers} layer(s) uploaded, digest {digest}")
    return PushedImage(repository, built.tag, digest, tuple(tags[1:]), True, layers)


def _engine_push(
    built: BuiltImage,
    destination: Destination,
    tag: str,
    client: docker.DockerClient,
    redact: Callable[[str], str],
) -> tuple[str, int]:
    """Tag the image for the registry and let the engine push it; (digest, layers uploaded)."""
    repository, image = destination.repository, f"{destination.repository}:{tag}"
    auth = destination.auth
    digest, uploaded = None, 0
    try:
        client.api.tag(built.image_id, repository, tag)
        stream = client.api.push(
            repository, tag=tag, stream=True, decode=True,
            auth_config=auth.docker_auth_config() if auth else None,
        )
        for chunk in stream:
            if "error" in chunk:
                raise _push_error(redact(chunk["error"]), image, destination.registry)
            if chunk.get("status") == "Pushed":
                uploaded += 1
            if "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
    except docker.errors.APIError as e:
        raise _push_error(redact(str(e.explanation or e)), image, destination.registry) from None
    except (docker.errors.DockerException, *ENGINE_GONE) as e:
        raise DockerEngineUnavailable(
            f"cannot reach the Docker engine to push {image}: {redact(str(e))}"
        ) from None
    if digest is None:
        raise RegistryError(f"registry {destination.registry} reported no digest for {image}")
    return digest, uploaded


def locate_image(
    registry: Registry,
    auth: RegistryAuth | None,
    repository: str,
    tag: str,
    digest: str | None,
    log: Callable[[str], None] = lambda line: None,
) -> PushedImage:
    """An image pushed by someone else (CI, a person), as the release deploys it: by digest.

    Called by the release flow for triggered releases, which release what was pushed
    instead of building. With `digest` (the registry's notification carries it), the
    registry must still hold that digest; the tag may have moved on since, and the digest is
    what was announced, so it is what gets deployed. Without one (Docker Hub's webhook sends
    none), the tag is read. Raises ImageNotFoundError when the registry holds neither.
    """
    if auth is None:
        auth = registry.login()
    destination = registry.destination(repository, auth)
    image = f"{destination.repository}:{tag}"
    with RegistryAPI(destination) as api:
        found = api.digest(digest or tag)
        if found is None:
            what = f"{image}@{digest}" if digest else image
            raise ImageNotFoundError(
                f"registry {destination.registry} does not hold {what}: nothing to release"
            )
        if digest:
            now = api.digest(tag)
            if now not in (None, digest):
                log(f"tag {image} has moved on to {now} since {digest} was announced; "
                    f"releasing {digest}")
    log(f"releasing {image}@{found} as pushed (nothing built)")
    return PushedImage(destination.repository, tag, found, (), uploaded=False)
