"""What `stack down` may touch, and what the stack's logs may hold, without the shared stack:
processes of the tests' own, a registry process on a free port, and a stand-in Docker client."""

from __future__ import annotations

import contextlib
import os
import stat

import httpx
import pytest
import yaml

from devstack import processes, stack
from devstack.processes import alive, spawn, stop
from devstack.settings import StackPaths, webhook_secret
from devstack.stack import STACK_LABEL, registry_config
from tests.registries.servers import free_port, wait_until


@pytest.fixture
def spawned(tmp_path):
    """Start `sleep` as the stack starts its processes; reap it whatever the test did."""
    started: list[int] = []

    def start(record: dict, name: str = "worker") -> int:
        pid = spawn(["sleep", "60"], tmp_path / "logs" / f"{name}.log", record, name)
        started.append(pid)
        return pid

    yield start
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, 9)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def test_recorded_process_is_stopped_and_forgotten(spawned):
    record: dict = {}
    pid = spawned(record)
    assert alive(record, "worker")
    said: list[str] = []
    stop(record, "worker", said.append, grace=5)
    assert said == [f"worker: stopped (pid {pid})"] and record == {}
    assert not alive({"worker_pid": pid, "worker_started": 0}, "worker")


def test_recycled_pid_is_never_signalled(spawned):
    record: dict = {}
    pid = spawned(record)
    # The record's process ended and another one now has its pid: another start time.
    record["worker_started"] -= 1
    said: list[str] = []
    stop(record, "worker", said.append, grace=5)
    assert said == [f"worker: pid {pid} is another process now: left alone"]
    assert processes._start_time(pid) is not None  # still running
    assert record == {}


def test_record_without_a_start_time_is_checked_by_program(spawned):
    record: dict = {}
    pid = spawned(record)
    old = {"worker_pid": pid}  # an older `up`'s record: the program must be `prefect`
    assert not alive(old, "worker")
    stop(old, "worker", lambda line: None, grace=5)
    assert processes._start_time(pid) is not None
    assert alive({"sleep_pid": pid}, "sleep")


def test_dead_process_is_not_alive(spawned):
    record: dict = {}
    pid = spawned(record)
    os.killpg(pid, 9)
    os.waitpid(pid, 0)
    assert not alive(record, "worker")


def test_logs_are_readable_by_root_only(spawned, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    (logs / "worker.log").write_text("from an older up\n")
    (logs / "worker.log").chmod(0o644)
    spawned({})
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert stat.S_IMODE((logs / "worker.log").stat().st_mode) == 0o600
    spawned({}, "registry")
    assert stat.S_IMODE((logs / "registry.log").stat().st_mode) == 0o600


def test_registry_does_not_log_the_webhook_secret(tmp_path):
    """The stack's registry configuration, on a free port: its log never holds the secret."""
    paths = StackPaths(tmp_path / "state")
    config = registry_config(paths)
    host = f"127.0.0.1:{free_port()}"
    config["http"]["addr"] = host
    config.pop("auth")
    config_file = paths.registry / "config.yml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config))
    record: dict = {}
    spawn(["docker-registry", "serve", str(config_file)], paths.logs / "registry.log",
          record, "registry")
    try:
        def answers() -> bool:
            try:
                return httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the registry", answers, 30)
        httpx.get(f"http://{host}/v2/_catalog", timeout=5)
    finally:
        stop(record, "registry", lambda line: None, grace=10)
    log = (paths.logs / "registry.log").read_text()
    assert "GET /v2/" in log  # it did log, just not the endpoint's headers
    assert webhook_secret(paths) not in log


class FakeNetwork:
    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name, self.labels, self.removed = name, labels, False

    def remove(self) -> None:
        self.removed = True


class FakeDocker:
    """The slice of docker.DockerClient `down` uses, with the Docker API's filter rules: a
    name filter matches any network whose name contains it."""

    def __init__(self, networks: list[FakeNetwork]) -> None:
        self.all_networks = networks
        self.containers = self.services = self
        self.networks = _Networks(networks)

    def list(self, **filters) -> list:
        return []


class _Networks:
    def __init__(self, networks: list[FakeNetwork]) -> None:
        self.networks = networks

    def list(self, names=None, filters=None) -> list[FakeNetwork]:
        found = [n for n in self.networks if not names or any(x in n.name for x in names)]
        label = (filters or {}).get("label")
        if label:
            key, _, value = label.partition("=")
            found = [n for n in found if n.labels.get(key) == value]
        return found


def test_down_removes_only_the_network_up_made(monkeypatch, tmp_path):
    made = FakeNetwork("ferryman", {STACK_LABEL: "true"})
    others = [
        FakeNetwork("ferryman-ci", {}),  # someone else's, sharing the prefix
        FakeNetwork("ferryman_default", {"com.docker.compose.project": "ferryman"}),
        FakeNetwork("other-ferryman", {STACK_LABEL: "true"}),
    ]
    monkeypatch.setattr(stack, "_docker", lambda timeout: FakeDocker([made, *others]))
    said: list[str] = []
    stack.down(say=said.append, paths=StackPaths(tmp_path))
    assert made.removed and not any(n.removed for n in others)
    assert said == ["network ferryman: removed"]


def test_down_leaves_a_network_named_ferryman_that_up_did_not_make(monkeypatch, tmp_path):
    theirs = FakeNetwork("ferryman", {})
    monkeypatch.setattr(stack, "_docker", lambda timeout: FakeDocker([theirs]))
    stack.down(say=lambda line: None, paths=StackPaths(tmp_path))
    assert not theirs.removed


def test_up_scrubs_a_secret_an_older_registry_configuration_logged(tmp_path):
    from devstack.stack import _scrub

    log = tmp_path / "registry.log"
    log.write_text('msg="configuring endpoint ferryman, headers=map[Authorization:'
                   '[Bearer s3cr3t]]"\na later line\n')
    _scrub(log, "s3cr3t")
    assert log.read_text() == ('msg="configuring endpoint ferryman, headers=map['
                               'Authorization:[Bearer <redacted>]]"\na later line\n')
