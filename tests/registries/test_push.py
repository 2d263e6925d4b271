"""Pushes through the real Docker engine, to registries on this machine.

- generic: docker-registry processes of the tests' own with htpasswd auth, and the stack's
  registry with its `local-registry` block;
- Docker Hub's flow: the same registry through `registry.endpoint`, with a DockerRegistryCredentials
  block holding an access token, and a `Front` answering 429 with Retry-After as Docker Hub
  does when it throttles (a local registry never does);
- ECR: moto in server mode for the API (repository, token, describe_images), the layers to a
  docker-registry behind `registry.registry_host` that accepts the token moto hands out,
  and a `NotificationBridge` telling moto what was pushed, as ECR's registry tells ECR.

The wrong-password and stopped-registry cases run as Prefect task and flow runs, to show what
Prefect retries and what it logs.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from pathlib import Path

import boto3
import docker
import docker.errors
import pytest
import yaml
from prefect import flow, task
from prefect_docker.credentials import DockerRegistryCredentials
from pydantic import SecretStr

import flows.release
from tasks.errors import ImageTooLargeError, RegistryUnavailableError
from tasks.images import BuiltImage, push_image
from tasks.registries import RegistryAuth, get_registry, load_auth
from tasks.registries.ecr import EcrRegistry
from tasks.registries.specs import DockerHubRegistrySpec, EcrRegistrySpec, GenericRegistrySpec
from tasks.spec import parse_spec

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deployments" / "demo"
ACCOUNT = "123456789012"  # moto's default account; its tokens are "AWS:<account>-auth-token"


@pytest.fixture(scope="module")
def docker_client():
    client = docker.from_env(timeout=120)
    try:
        client.ping()
    except (docker.errors.DockerException, OSError) as e:
        pytest.fail(f"dockerd is not answering ({e}); run `ferryman stack up`")
    yield client
    client.close()


@pytest.fixture
def build(docker_client, tmp_path):
    """Build small FROM scratch images (one layer of random bytes); removed at the end."""
    made: list[str] = []

    def build(repository: str = "ferryman-test/registries", tag: str = "1.0.0",
              size: int = 2048) -> BuiltImage:
        context = tmp_path / f"context-{len(made)}"
        context.mkdir()
        (context / "payload").write_bytes(secrets.token_bytes(size))
        (context / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
        image, _ = docker_client.images.build(
            path=str(context), tag=f"{repository}:{tag}", rm=True, forcerm=True
        )
        made.append(image.id)
        return BuiltImage(image_id=image.id, repository=repository, tag=tag)

    yield build
    for image_id in made:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(image_id, force=True)


@contextlib.contextmanager
def saved_block(username: str, password: str, registry: str):
    """A DockerRegistryCredentials block on the stack's Prefect server, deleted afterwards."""
    name = f"ferryman-test-{secrets.token_hex(4)}"
    DockerRegistryCredentials(
        username=username, password=password, registry_url=registry
    ).save(name, overwrite=True)
    try:
        yield name
    finally:
        DockerRegistryCredentials.delete(name)


@contextlib.contextmanager
def saved_aws_block():
    """A prefect-aws AwsCredentials block with moto's fake keys, deleted afterwards."""
    from prefect_aws import AwsCredentials

    name = f"ferryman-test-{secrets.token_hex(4)}"
    AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing",
                   region_name="us-east-1").save(name, overwrite=True)
    try:
        yield name
    finally:
        AwsCredentials.delete(name)


def prefect_logs(flow_run_id) -> list[str]:
    """Every log line of a flow run and its task runs, as the Prefect UI shows them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


def task_runs(flow_run_id, name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [run for run in runs if run.name.startswith(name)]


# -- generic ------------------------------------------------------------------------------


def test_generic_push_twice_uploads_nothing_the_second_time(start_registry, build,
                                                            docker_client):
    registry = start_registry({"pusher": "generic-Pa55"})
    auth = RegistryAuth(registry.host, "pusher", SecretStr("generic-Pa55"))
    generic = get_registry(GenericRegistrySpec(url=registry.host, extra_tags=["stable"]))
    built = build()
    first = push_image(built, generic, auth, docker_client)
    assert first.uploaded and first.layers_uploaded == 1
    assert first.reference == f"{registry.host}/{built.repository}:1.0.0@{first.digest}"
    before = registry.uploads()
    lines: list[str] = []
    second = push_image(built, generic, auth, docker_client, log=lines.append)
    assert (second.digest, second.uploaded, second.layers_uploaded) == (first.digest, False, 0)
    assert registry.uploads() == before  # not one blob or manifest sent the second time
    assert "as 1.0.0, stable: nothing uploaded" in lines[-1]


def test_stack_registry_with_its_prefect_block(build, docker_client):
    spec = parse_spec(yaml.safe_load((DEMO / "release.yaml").read_text()), DEMO, "demo")
    auth = load_auth(spec.registry)  # the `local-registry` block, from the Prefect server
    assert auth.registry == "127.0.0.1:5000" and auth.username == "ferryman"
    built = build("ferryman-test/registries", f"block-{secrets.token_hex(3)}")
    pushed = push_image(built, get_registry(spec.registry), auth, docker_client)
    assert pushed.uploaded
    again = push_image(built, get_registry(spec.registry), auth, docker_client)
    assert not again.uploaded and again.digest == pushed.digest


# -- Docker Hub's flow --------------------------------------------------------------------


def test_docker_hub_flow_with_a_token_block_and_throttling(start_registry, start_front,
                                                           build, docker_client):
    token = f"dckr_pat_{secrets.token_urlsafe(18)}"
    registry = start_registry({"acme-bot": token})
    throttle = {"left": 2}

    def rule(method, path, n):  # the first two manifest checks are throttled, as Hub does
        if method == "HEAD" and "/manifests/" in path and throttle["left"]:
            throttle["left"] -= 1
            return 429, {"Retry-After": "1"}
        return None

    front = start_front(registry.host, rule)
    with saved_block("acme-bot", token, "docker.io") as block:
        spec = DockerHubRegistrySpec(kind="dockerhub", namespace="acme",
                                     credentials_block=block, endpoint=front.host)
        auth = load_auth(spec)
    hub = get_registry(spec)
    waits: list[float] = []
    built = build("demo")
    pushed = push_image(built, hub, auth, docker_client, sleep=waits.append)
    assert waits == [1, 1]
    assert pushed.repository == f"{front.host}/acme/demo" and pushed.uploaded
    statuses = [status for method, path, status in front.seen if "/manifests/" in path]
    assert statuses[:2] == [429, 429] and statuses[-1] == 200
    assert any(m == "PUT" and "/v2/acme/demo/manifests/1.0.0" in p for m, p, _ in front.seen)


def test_throttled_upload_is_transient(start_registry, start_front, build, docker_client):
    token = "tok-3xample-token"
    registry = start_registry({"acme-bot": token})
    front = start_front(registry.host, lambda method, path, n: (
        (429, {"Retry-After": "1"}) if method == "POST" and "/blobs/uploads/" in path else None))
    hub = get_registry(DockerHubRegistrySpec(kind="dockerhub", namespace="acme",
                                             endpoint=front.host))
    auth = RegistryAuth(front.host, "acme-bot", SecretStr(token))
    with pytest.raises(RegistryUnavailableError) as e:
        push_image(build("demo"), hub, auth, docker_client, sleep=lambda s: None)
    # The engine passes no Retry-After on: this one is left to Prefect's retries.
    assert e.value.retry_after is None and "429" in str(e.value)
    assert f"{front.host}/acme/demo:1.0.0" in str(e.value) and token not in str(e.value)


def test_layer_refused_as_too_large_is_permanent(start_registry, start_front, build,
                                                 docker_client):
    password = "pw-0f-the-test"
    registry = start_registry({"pusher": password})
    front = start_front(registry.host, lambda method, path, n: (
        (413, {}) if method in ("PATCH", "PUT") and "/blobs/uploads/" in path else None))
    generic = get_registry(GenericRegistrySpec(url=front.host))
    auth = RegistryAuth(front.host, "pusher", SecretStr(password))
    with pytest.raises(ImageTooLargeError) as e:
        push_image(build(), generic, auth, docker_client)
    image = f"{front.host}/ferryman-test/registries:1.0.0"
    assert f"registry {front.host} refused {image} as too large" in str(e.value)


# -- ECR ----------------------------------------------------------------------------------


def test_ecr_push_creates_logs_in_pushes_and_reads_back(ecr_api, start_registry, start_bridge,
                                                       build, docker_client, monkeypatch):
    ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=ecr_api)
    bridge = start_bridge(ecr)
    registry = start_registry({"AWS": f"{ACCOUNT}-auth-token"}, notify=bridge.url)
    bridge.watch(registry, "AWS")
    # The credentials and region come from a saved AwsCredentials block, not the environment.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key)
    built = build("team/app")
    with saved_aws_block() as block:
        spec = EcrRegistrySpec(kind="ecr", aws_credentials_block=block, endpoint_url=ecr_api,
                               registry_host=registry.host, tag_immutability=True,
                               scan_on_push=True)
        pushed = push_image(built, EcrRegistry(spec), None, docker_client)
        before = registry.uploads()
        again = push_image(built, EcrRegistry(spec), None, docker_client)

    assert pushed.reference == f"{registry.host}/team/app:1.0.0@{pushed.digest}"
    [repo] = ecr.describe_repositories(repositoryNames=["team/app"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    [image] = ecr.describe_images(repositoryName="team/app")["imageDetails"]
    assert image["imageDigest"] == pushed.digest and image["imageTags"] == ["1.0.0"]
    assert bridge.errors == []
    assert not again.uploaded and again.digest == pushed.digest
    assert registry.uploads() == before


# -- through Prefect ----------------------------------------------------------------------


def test_wrong_password_fails_once_and_no_log_line_shows_it(start_registry, build, capfd):
    from tasks.steps import push

    right, wrong = "the-Right-pa55word", "the-Wrong-pa55word-x9"
    registry = start_registry({"pusher": right})
    data = yaml.safe_load((DEMO / "release.yaml").read_text())
    data["registry"] = {"url": registry.host}
    spec = parse_spec(data, DEMO, "test")
    built = build()
    auth = RegistryAuth(registry.host, "pusher", SecretStr(wrong))

    @flow(name="push-with-a-wrong-password")
    def push_only():
        return push(spec, built, auth, return_state=True)

    state = push_only(return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    [run] = task_runs(flow_run_id, "push")
    assert run.run_count == 1 and run.state.is_failed()  # permanent: not retried
    logs = prefect_logs(flow_run_id)
    assert any("RegistryAuthError" in line and registry.host in line for line in logs)
    assert not any("Retry" in line for line in logs)
    console = capfd.readouterr()
    for text in (*logs, console.out, console.err, str(state.message)):
        assert wrong not in text and right not in text


def test_registry_stopped_mid_run_is_retried_then_fails_and_nothing_is_deployed(
    start_registry, docker_client, tmp_path, monkeypatch
):
    password = "mid-Run-pa55word"
    registry = start_registry({"pusher": password})
    name = f"ferryman-test-{secrets.token_hex(4)}"
    spec_file = write_release(tmp_path, name, registry.host)

    original = flows.release.package

    @task(name="package", task_run_name="package {version}")
    def package_then_stop_the_registry(spec, version, build_args):
        built = original.fn(spec, version, build_args)
        registry.stop(signal.SIGKILL)  # the registry dies between the build and the push
        return built

    monkeypatch.setattr(flows.release, "package", package_then_stop_the_registry)
    with saved_block("pusher", password, registry.host) as block:
        spec_file.write_text(spec_file.read_text().replace("BLOCK", block))
        state = flows.release.release(spec_path=str(spec_file), version="1.0.0",
                                      return_state=True)
    try:
        result = state.result(raise_on_failure=False)
        assert result.outcome.value == "failed"
        assert result.reason.startswith("RegistryUnavailableError: registry")
        assert registry.host in result.reason
        [push_run] = task_runs(state.state_details.flow_run_id, "push")
        assert push_run.run_count == 4  # the first try and Prefect's three retries
        assert [s.name for s in result.steps] == ["package", "push"]
        with pytest.raises(docker.errors.NotFound):
            docker_client.services.get(name)  # nothing deployed
        assert password not in result.reason
    finally:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(f"ferryman-test/{name}:1.0.0", force=True)


def write_release(tmp_path: Path, name: str, registry: str) -> Path:
    """A release spec for a tiny image and a service `name` that must never be created."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "payload").write_bytes(secrets.token_bytes(1024))
    (context / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    stack = yaml.safe_load((DEMO / "stack.yml").read_text())
    stack["services"][name] = stack["services"].pop("demo")
    (tmp_path / "stack.yml").write_text(yaml.safe_dump(stack, sort_keys=False))
    data = yaml.safe_load((DEMO / "release.yaml").read_text())
    data["app"] = name
    data["image"] = {"repository": f"ferryman-test/{name}", "context": str(context)}
    data["registry"] = {"url": registry, "credentials_block": "BLOCK"}
    data["target"].update(service=name, stack_file=str(tmp_path / "stack.yml"))
    spec_file = tmp_path / "release.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec_file
