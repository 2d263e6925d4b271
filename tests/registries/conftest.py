"""Registries of the tests' own, all on 127.0.0.1: docker-registry processes with htpasswd
auth, moto in server mode for ECR's API, and a small HTTP front that answers 429 or 413 in a
registry's place. None of them is the shared stack's registry: they can be stopped at will.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.registries.servers import NotificationBridge, free_port, fronts, registries, wait_until

VENV_BIN = Path(sys.executable).parent
AWS_TEST_ENV = {
    # Fake credentials, and nothing that could send boto3 to a real AWS endpoint or to the
    # instance metadata address while looking for others.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


# -- moto ---------------------------------------------------------------------------------


class MotoServer:
    """`moto_server` on a free 127.0.0.1 port, stopped at the end of the session."""

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **AWS_TEST_ENV, **(env or {})},
            )
        wait_until(f"moto_server on {self.url}", self._answers, 30, self.process)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Iterator[MotoServer]:
    """ECR's API, emulated by moto in server mode; reset before each test that uses it."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def ecr_api(moto: MotoServer, monkeypatch) -> str:
    """moto's URL, with a clean state and boto3 confined to fake credentials."""
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    moto.reset()
    return moto.url


@pytest.fixture(scope="session")
def moto_with_auth(tmp_path_factory) -> Iterator[MotoServer]:
    """A second moto that checks credentials as AWS does: unknown keys are refused."""
    server = MotoServer(
        tmp_path_factory.mktemp("moto-auth") / "moto.log",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"},
    )
    yield server
    server.stop()


# -- registries ---------------------------------------------------------------------------


@pytest.fixture
def start_registry(tmp_path) -> Iterator:
    """Start docker-registry processes of the test's own; each is stopped at the end."""
    with registries(tmp_path) as start:
        yield start


@pytest.fixture
def start_front() -> Iterator:
    """Start HTTP fronts that stand in a registry's place; each is stopped at the end."""
    with fronts() as start:
        yield start


@pytest.fixture
def start_bridge() -> Iterator:
    """Start the registry-to-moto notification bridge (see `NotificationBridge`)."""
    started: list[NotificationBridge] = []

    def start(ecr_client) -> NotificationBridge:
        bridge = NotificationBridge(ecr_client)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()
