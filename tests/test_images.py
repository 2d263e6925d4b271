"""push_image's decisions, against real docker-registry processes of the tests' own.

The Docker engine is replaced here by `FakeEngine`, which uploads through the registry API
as the engine would; tests/registries/test_push.py runs the same paths with the real engine.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
import requests.exceptions
import urllib3.exceptions
from pydantic import SecretStr

from tasks import errors
from tasks.images import (
    MAX_WAITS,
    BuiltImage,
    _push_error,
    build_image,
    locate_image,
    push_image,
)
from tasks.registries.base import RegistryAuth
from tasks.registries.generic import GenericRegistry
from tasks.registries.specs import GenericRegistrySpec
from tasks.spec import load_spec
from tests.registries.servers import fronts, image_id, registries, upload_image

PASSWORD = "pa55-Word-that-must-never-show"
NAME = "team/app"


class FakeEngine:
    """The slice of docker.DockerClient that push_image uses, uploading via the API."""

    def __init__(self, registry) -> None:
        self.registry = registry
        self.payloads: dict[str, bytes] = {}
        self.repo_digests: dict[str, list[str]] = {}
        self.pushes: list[str] = []
        self.api = self

    def build(self, payload: bytes | None = None) -> BuiltImage:
        payload = payload or secrets.token_bytes(32)
        built = BuiltImage(image_id=image_id(payload), repository=NAME, tag="1.0.0")
        self.payloads[built.image_id] = payload
        return built

    def inspect_image(self, image: str) -> dict:
        return {"RepoDigests": self.repo_digests.get(image, [])}

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.tagged = (image, repository, tag)

    def push(self, repository: str, tag: str, stream: bool, decode: bool, auth_config=None):
        image = self.tagged[0]
        self.pushes.append(f"{repository}:{tag}")
        digest, _ = upload_image(self.registry, NAME, tag, self.payloads[image])
        self.repo_digests.setdefault(image, []).append(f"{repository}@{digest}")
        yield {"status": "Pushed"}
        yield {"aux": {"Tag": tag, "Digest": digest, "Size": 1}}


def registry_for(host: str, **options) -> GenericRegistry:
    return GenericRegistry(GenericRegistrySpec(url=host, **options))


def auth_for(host: str, password: str = PASSWORD) -> RegistryAuth:
    return RegistryAuth(host, "pusher", SecretStr(password))


@pytest.fixture
def registry(tmp_path):
    with registries(tmp_path) as start:
        yield start({"pusher": PASSWORD})


@pytest.fixture
def start_front():
    with fronts() as start:
        yield start


def test_locates_a_pushed_image_by_its_announced_digest_without_uploading(registry):
    digest, _ = upload_image(registry, NAME, "1.4.0")
    uploads = len(registry.uploads())
    found = locate_image(registry_for(registry.host), auth_for(registry.host), NAME, "1.4.0",
                         digest)
    assert found.reference == f"{registry.host}/{NAME}:1.4.0@{digest}" and not found.uploaded
    assert len(registry.uploads()) == uploads


def test_locates_by_tag_when_the_sender_gave_no_digest(registry):
    digest, _ = upload_image(registry, NAME, "1.4.0")
    found = locate_image(registry_for(registry.host), auth_for(registry.host), NAME, "1.4.0",
                         None)
    assert found.digest == digest


def test_deploys_the_announced_digest_when_the_tag_has_moved_on(registry):
    announced, _ = upload_image(registry, NAME, "1.4.0")
    moved, _ = upload_image(registry, NAME, "1.4.0")  # the tag now names another image
    lines: list[str] = []
    found = locate_image(registry_for(registry.host), auth_for(registry.host), NAME, "1.4.0",
                         announced, log=lines.append)
    assert found.digest == announced != moved
    assert any("has moved on" in line for line in lines)


def test_image_the_registry_does_not_hold_is_a_clear_permanent_error(registry):
    absent = "sha256:" + "0" * 64
    with pytest.raises(errors.ImageNotFoundError, match=f"does not hold .*{NAME}:1.4.0@{absent}"):
        locate_image(registry_for(registry.host), auth_for(registry.host), NAME, "1.4.0", absent)
    with pytest.raises(errors.ImageNotFoundError, match=f"does not hold .*{NAME}:9.9.9"):
        locate_image(registry_for(registry.host), auth_for(registry.host), NAME, "9.9.9", None)


def test_pushes_and_returns_the_image_pinned_by_digest(registry):
    engine = FakeEngine(registry)
    built = engine.build()
    pushed = push_image(built, registry_for(registry.host), auth_for(registry.host), engine)
    assert pushed.reference == f"{registry.host}/{NAME}:1.0.0@{pushed.digest}"
    assert pushed.uploaded and pushed.layers_uploaded == 1
    assert engine.pushes == [f"{registry.host}/{NAME}:1.0.0"]


def test_pushing_the_same_image_twice_uploads_nothing_the_second_time(registry):
    engine = FakeEngine(registry)
    built = engine.build()
    first = push_image(built, registry_for(registry.host), auth_for(registry.host), engine)
    uploads = len(registry.uploads())
    lines: list[str] = []
    again = push_image(built, registry_for(registry.host), auth_for(registry.host), engine,
                       log=lines.append)
    assert again.digest == first.digest and not again.uploaded
    assert len(registry.uploads()) == uploads  # not one POST, PATCH or PUT
    assert len(engine.pushes) == 1
    assert "already holds" in lines[-1] and "nothing uploaded" in lines[-1]


def test_an_image_pushed_from_elsewhere_is_recognised_by_its_image_id(registry):
    engine = FakeEngine(registry)
    built = engine.build()
    upload_image(registry, NAME, "1.0.0", engine.payloads[built.image_id])  # not via engine
    pushed = push_image(built, registry_for(registry.host), auth_for(registry.host), engine)
    assert not pushed.uploaded and engine.pushes == []


def test_refuses_to_move_a_tag_that_points_at_another_image(registry):
    engine = FakeEngine(registry)
    other, _ = upload_image(registry, NAME, "1.0.0")
    with pytest.raises(errors.TagConflictError) as e:
        push_image(engine.build(), registry_for(registry.host), auth_for(registry.host), engine)
    text = str(e.value)
    assert f"tag {registry.host}/{NAME}:1.0.0 points at {other}" in text
    assert "set registry.allow_tag_overwrite" in text
    assert engine.pushes == []


def test_extra_tags_are_pushed_and_a_moving_tag_needs_leave(registry):
    engine = FakeEngine(registry)
    old, _ = upload_image(registry, NAME, "latest")
    strict = registry_for(registry.host, extra_tags=["latest"])
    with pytest.raises(errors.TagConflictError, match=":latest points at"):
        push_image(engine.build(), strict, auth_for(registry.host), engine)
    lenient = registry_for(registry.host, extra_tags=["latest"], allow_tag_overwrite=["latest"])
    lines: list[str] = []
    pushed = push_image(engine.build(), lenient, auth_for(registry.host), engine,
                        log=lines.append)
    assert pushed.extra_tags == ("latest",)
    assert engine.pushes == [f"{registry.host}/{NAME}:1.0.0", f"{registry.host}/{NAME}:latest"]
    assert any(f"moving tag {registry.host}/{NAME}:latest off {old}" in line for line in lines)


def test_honours_retry_after_then_pushes(registry, start_front):
    throttled = 2

    def rule(method, path, n):
        return (429, {"Retry-After": "3"}) if n <= throttled else None

    front = start_front(registry.host, rule)
    engine = FakeEngine(registry)
    waits: list[float] = []
    lines: list[str] = []
    pushed = push_image(engine.build(), registry_for(front.host), auth_for(front.host), engine,
                        log=lines.append, sleep=waits.append)
    assert waits == [3, 3] and pushed.uploaded
    assert "waiting 3 s as the registry asked (1 of 3)" in lines[0]


def test_gives_up_after_a_bounded_number_of_waits(registry, start_front):
    front = start_front(registry.host, lambda method, path, n: (429, {"Retry-After": "1"}))
    waits: list[float] = []
    with pytest.raises(errors.RegistryUnavailableError) as e:
        push_image(FakeEngine(registry).build(), registry_for(front.host), auth_for(front.host),
                   FakeEngine(registry), sleep=waits.append)
    assert waits == [1] * MAX_WAITS and e.value.retry_after == 1


def test_leaves_a_long_retry_after_to_prefect(registry, start_front):
    front = start_front(registry.host, lambda method, path, n: (503, {"Retry-After": "3600"}))
    waits: list[float] = []
    with pytest.raises(errors.RegistryUnavailableError, match="HTTP 503"):
        push_image(FakeEngine(registry).build(), registry_for(front.host), auth_for(front.host),
                   FakeEngine(registry), sleep=waits.append)
    assert waits == []


def test_wrong_password_fails_at_once_without_the_secret(registry, caplog):
    caplog.set_level(logging.DEBUG)
    engine = FakeEngine(registry)
    lines: list[str] = []
    waits: list[float] = []
    wrong = "Wrong-pa55word-that-must-never-show"
    with pytest.raises(errors.RegistryAuthError) as e:
        push_image(engine.build(), registry_for(registry.host), auth_for(registry.host, wrong),
                   engine, log=lines.append, sleep=waits.append)
    text = str(e.value)
    assert f"registry {registry.host} refused the credentials of user 'pusher'" in text
    assert f"{registry.host}/{NAME}:1.0.0" in text
    for shown in (text, caplog.text, *lines):
        assert wrong not in shown and PASSWORD not in shown
    assert waits == [] and engine.pushes == []


def test_stopped_registry_is_a_transient_error_naming_registry_and_image(registry):
    engine = FakeEngine(registry)
    built = engine.build()
    registry.stop()
    with pytest.raises(errors.RegistryUnavailableError) as e:
        push_image(built, registry_for(registry.host), auth_for(registry.host), engine,
                   sleep=lambda s: pytest.fail("no Retry-After, no wait"))
    assert f"registry {registry.host} is unreachable" in str(e.value)


@pytest.mark.parametrize(
    "message, error",
    [
        ("unauthorized: authentication required", errors.RegistryAuthError),
        ("denied: requested access to the resource is denied", errors.RegistryAuthError),
        ("name unknown: repository name not known to registry", errors.RepositoryNotFoundError),
        ("error parsing HTTP 413 response body: unexpected end of JSON input",
         errors.ImageTooLargeError),
        ("tag invalid: The image tag '1.0' already exists in the 'app' repository and cannot "
         "be overwritten because the repository is immutable.", errors.TagConflictError),
        ("toomanyrequests: You have reached your pull rate limit", errors.RegistryUnavailableError),
        ("Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
         errors.RegistryUnavailableError),
        ("manifest invalid: manifest invalid", errors.RegistryError),
        ("blob unknown: sha256:9a4135030f4290 unknown to registry", errors.RegistryError),
    ],
)
def test_engine_push_errors_become_one_clear_error(message, error):
    found = _push_error(message, "127.0.0.1:1/team/app:1.0.0", "127.0.0.1:1")
    assert type(found) is error
    assert "127.0.0.1:1/team/app:1.0.0" in str(found) and "registry 127.0.0.1:1" in str(found)


# What a Docker engine restart looks like from the docker SDK: raw requests/urllib3/socket
# errors, not DockerException.
ENGINE_RESTARTS = [
    requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected())"),
    urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)"),
    requests.exceptions.ChunkedEncodingError("Connection broken: InvalidChunkLength"),
    ConnectionResetError(104, "Connection reset by peer"),
]


class RestartingEngine(FakeEngine):
    """An engine that goes away after the first status line of a push."""

    def __init__(self, registry, error: Exception) -> None:
        super().__init__(registry)
        self.error = error

    def push(self, repository: str, tag: str, stream: bool, decode: bool, auth_config=None):
        self.pushes.append(f"{repository}:{tag}")
        yield {"status": "Preparing"}
        raise self.error


class RestartingBuilder:
    """An engine that goes away after the first line of a build."""

    def __init__(self, error: Exception) -> None:
        self.error, self.api = error, self

    def build(self, **options):
        yield {"stream": "Step 1/3 : FROM scratch"}
        raise self.error


@pytest.mark.parametrize("error", ENGINE_RESTARTS, ids=lambda e: type(e).__name__)
def test_engine_restart_mid_push_is_transient(registry, error):
    engine = RestartingEngine(registry, error)
    with pytest.raises(errors.DockerEngineUnavailable, match="cannot reach the Docker engine"):
        push_image(engine.build(), registry_for(registry.host), auth_for(registry.host), engine)
    assert engine.pushes  # it failed in the push, not before


@pytest.mark.parametrize("error", ENGINE_RESTARTS, ids=lambda e: type(e).__name__)
def test_engine_restart_mid_build_is_transient(error):
    spec = load_spec(Path(__file__).resolve().parents[1] / "deployments/demo/release.yaml")
    with pytest.raises(errors.DockerEngineUnavailable, match="to build"):
        build_image(spec, "1.0.0", {}, RestartingBuilder(error))


def test_engine_gone_before_the_push_is_transient(registry):
    engine = FakeEngine(registry)
    built = engine.build()

    def refused(image):
        raise requests.exceptions.ConnectionError("Connection refused")

    engine.inspect_image = refused
    with pytest.raises(errors.DockerEngineUnavailable):
        push_image(built, registry_for(registry.host), auth_for(registry.host), engine)
