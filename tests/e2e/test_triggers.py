"""Releases started by triggers, on the real stack: `docker push` -> registry notification ->
webhook receiver -> `ferryman.image.pushed` event -> deployment trigger -> worker -> release.

Versions are `<minutes since the epoch>.<n>.0`, so each run's tags are newer than anything an
earlier run (or another test module) left running, as the demo's tag policy requires.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from tests.helpers import ROOT, demo_spec_copy, demo_status

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]

MAJOR = int(time.time()) // 60
RECEIVER = "http://127.0.0.1:8470"
REGISTRY = "127.0.0.1:5000"
LATENCIES: list[float] = []
"""Seconds from `docker push` returning to the release run starting, for the summary."""


def webhook_secret() -> str:
    from devstack import settings

    return settings.webhook_secret(settings.StackPaths.default())


@pytest.fixture(scope="module", autouse=True)
def docker_login():
    from devstack import settings

    password = settings.registry_password(settings.StackPaths.default())
    done = subprocess.run(
        ["docker", "login", "-u", "ferryman", "--password-stdin", REGISTRY],
        input=password, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr


def docker_push(version: str, repository: str = "ferryman/demo") -> tuple[float, str]:
    """Build the demo app as `version` and `docker push` it; (when the push returned, digest)."""
    import docker

    image = f"{REGISTRY}/{repository}:{version}"
    docker.from_env().images.build(
        path=str(ROOT / "examples" / "demo-app"), tag=image,
        buildargs={"APP": "demo", "VERSION": version}, rm=True,
    )
    done = subprocess.run(["docker", "push", image], capture_output=True, text=True)
    returned = time.time()
    assert done.returncode == 0, done.stderr
    digest = next(w for w in done.stdout.split() if w.startswith("sha256:"))
    return returned, digest


def release_runs(version: str, app: str = "demo") -> list:
    """The release flow runs asking for `version` of `app`, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["release"])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=100,
        )
    return sorted(
        (r for r in runs if (r.parameters or {}).get("version") == version
         and (r.parameters.get("app") == app or app in r.parameters.get("spec_path", ""))),
        key=lambda r: r.created,
    )


def wait_for_runs(version: str, count: int = 1, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = release_runs(version)
        if len(runs) >= count:
            return runs
        time.sleep(0.5)
    raise AssertionError(f"no release run for {version} within {timeout:.0f}s")


def wait_until_final(run_id, timeout: float = 300):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish within {timeout:.0f}s")


def started_at(run_id, timeout: float = 60) -> float:
    """When the run entered Running (Unix seconds)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.start_time is not None:
                return run.start_time.timestamp()
            time.sleep(0.2)
    raise AssertionError(f"flow run {run_id} did not start within {timeout:.0f}s")


def notification(version: str, digest: str, delivery_id: str) -> dict:
    """A CNCF distribution notification of a tagged manifest push, as the registry sends it."""
    return {"events": [{
        "id": delivery_id, "timestamp": datetime.now(UTC).isoformat(), "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "repository": "ferryman/demo", "tag": version,
        },
        "request": {"host": REGISTRY, "method": "PUT"},
    }]}


def assert_nothing_started(*versions: str, wait: float = 12) -> None:
    time.sleep(wait)  # pushed -> run started takes ~5 s (see the latency test)
    for version in versions:
        assert release_runs(version) == [], f"a release run was started for {version}"


def test_pushed_tag_is_released_once_and_promoted_even_when_delivered_again():
    version = f"{MAJOR}.1.0"
    pushed, digest = docker_push(version)
    for attempt in ("again-1", "again-2"):  # the same push, delivered twice more
        for _ in range(20):
            answer = httpx.post(
                f"{RECEIVER}/hooks/distribution",
                content=json.dumps(notification(version, digest, attempt)).encode(),
                headers={"Authorization": f"Bearer {webhook_secret()}"},
            )
            # 503 while the registry's own delivery is still being handed to Prefect: a
            # sender tries again, as the registry does.
            if answer.status_code != 503:
                break
            time.sleep(0.5)
        assert answer.status_code == 202
    [run] = wait_for_runs(version)
    LATENCIES.append(started_at(run.id) - pushed)
    run = wait_until_final(run.id)
    assert run.state.is_completed() and run.state.name == "Completed", run.state
    assert {"trigger:webhook", "app:demo"} <= set(run.tags)
    assert run.parameters["digest"] == digest and run.deployment_id is not None
    assert len(release_runs(version)) == 1
    status = demo_status()
    assert status["running"] == status["stable"] == version
    assert status["running_image"].endswith(f"@{digest}")


def test_tag_outside_the_policy_starts_nothing():
    for tag in ("latest", "nightly", f"{MAJOR}.2.0-rc.1"):
        docker_push(tag)
    assert_nothing_started("latest", "nightly", f"{MAJOR}.2.0-rc.1")


def test_forged_webhook_gets_401_and_starts_nothing():
    version = f"{MAJOR}.3.0"
    body = json.dumps(notification(version, "sha256:" + "ab" * 32, "forged")).encode()
    forged = [
        {"Authorization": "Bearer not-the-secret"},
        {"X-Ferryman-Signature": "sha256=" + "00" * 32,
         "X-Ferryman-Timestamp": str(int(time.time()))},
        {},
    ]
    for headers in forged:
        answer = httpx.post(f"{RECEIVER}/hooks/distribution", content=body, headers=headers)
        assert answer.status_code == 401, answer.text
    assert_nothing_started(version, wait=8)


def test_two_pushes_a_second_apart_release_the_newer_once_never_both():
    older, newer = f"{MAJOR}.4.0", f"{MAJOR}.5.0"
    pushed, _ = docker_push(older)
    time.sleep(max(0.0, pushed + 1 - time.time()))
    pushed, digest = docker_push(newer)
    [run] = wait_for_runs(newer)
    LATENCIES.append(started_at(run.id) - pushed)
    run = wait_until_final(run.id)
    assert run.state.name == "Completed", run.state
    older_runs = release_runs(older)
    assert older_runs, "the older push started no run at all (the trigger missed it)"
    for skipped in older_runs:
        skipped = wait_until_final(skipped.id)
        assert skipped.state.name == "Skipped", skipped.state
        assert "superseded" in skipped.state.message or "older than" in skipped.state.message
    status = demo_status()
    assert status["running"] == status["stable"] == newer
    assert status["previous"] != older


def test_push_to_release_start_latency_is_reported():
    assert LATENCIES, "no latency measured"
    print(f"\npush -> release run started: median {statistics.median(LATENCIES):.1f} s "
          f"over {len(LATENCIES)} push(es): {', '.join(f'{s:.1f}' for s in LATENCIES)}")


def closed_window(data: dict) -> None:
    """A daily ten-minute window that opens two hours from now (UTC): closed now."""
    opens = datetime.now(UTC) + timedelta(hours=2)
    data["window"] = {"schedule": f"{opens.minute} {opens.hour} * * *", "duration": "10m",
                      "timezone": "UTC"}


def test_release_outside_the_window_is_scheduled_for_its_opening(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    from flows.release import release
    from tasks.spec import load_spec
    from tasks.windows import next_opening

    def windowed(data: dict) -> None:
        closed_window(data)
        data["app"] = "windowed"

    path = demo_spec_copy(tmp_path, windowed)
    asked = datetime.now(UTC)
    state = release(spec_path=str(path), version=f"{MAJOR}.6.0", return_state=True)
    result = state.result(raise_on_failure=False)
    assert state.name == "Deferred" and result.outcome == "deferred", state
    opening = next_opening(load_spec(path).window, asked)
    with get_client(sync_client=True) as client:
        pending = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["pending", "app:windowed"]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        ))
        try:
            assert len(pending) == 1, pending
            assert abs(pending[0].expected_start_time - opening) < timedelta(seconds=1)
            assert pending[0].name in result.reason and "pending" in pending[0].tags
        finally:
            for run in pending:
                client.delete_flow_run(run.id)


def test_poller_announces_a_new_tag_once(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.variables import Variable

    from flows.poller import memory_name, poll_tags

    app = f"polled-{MAJOR}"

    stack = yaml.safe_load((ROOT / "deployments" / "demo" / "stack.yml").read_text())
    stack["services"] = {app: stack["services"]["demo"]}
    (tmp_path / "stack.yml").write_text(yaml.safe_dump(stack))

    def polled(data: dict) -> None:
        closed_window(data)  # the releases the events start wait for a window: no deploy
        data["app"] = app
        data["image"]["repository"] = f"ferryman/{app}"
        data["target"]["service"] = app
        data["target"]["stack_file"] = str(tmp_path / "stack.yml")

    path = str(demo_spec_copy(tmp_path, polled))
    docker_push("1.0.0", f"ferryman/{app}")
    docker_push("1.1.0", f"ferryman/{app}")
    try:
        first = poll_tags(spec_path=path)
        again = poll_tags(spec_path=path)
        docker_push("1.2.0", f"ferryman/{app}")
        third = poll_tags(spec_path=path)
        assert first == [f"{app}: announced 1.1.0"]
        assert "announced before" in again[0]
        assert third == [f"{app}: announced 1.2.0"]
        with get_client(sync_client=True) as client:
            for _ in range(30):  # events reach the server asynchronously
                events = client.read_events(filter=EventFilter(
                    event=EventNameFilter(name=["ferryman.image.pushed"]),
                    resource=EventResourceFilter(id=[f"ferryman.app.{app}"]),
                ), limit=50).events
                if len(events) >= 2:
                    break
                time.sleep(1)
            assert sorted(e.payload["tag"] for e in events) == ["1.1.0", "1.2.0"]
            assert {e.payload["trigger"] for e in events} == {"poller"}
    finally:
        Variable.unset(memory_name(app))
        _delete_runs_of(app)


def _delete_runs_of(app: str) -> None:
    """The release runs the poller's events started (deferred, and the scheduled ones)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    time.sleep(15)  # let the triggered runs reach their window check and defer
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"app:{app}"])), limit=50,
        )
        for run in runs:
            if run.state and run.state.is_scheduled():
                client.delete_flow_run(run.id)


def test_deferred_releases_run_at_the_opening_newest_only_and_report_the_overrun(tmp_path):
    """Two releases deferred to the same opening: when it comes, the newer runs, the older
    gives way. The window lasts 1 s and the release takes longer: it is not cut off, and its
    report says it overran. (The digests are not in the registry, so the newer one fails at
    `locate`, before it changes anything: what is tested is who runs, not a deploy.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    from flows.release import release

    now = datetime.now(UTC)
    opening = (now + timedelta(seconds=125)).replace(second=0, microsecond=0)
    app = f"window-{MAJOR}"

    def windowed(data: dict) -> None:
        data["app"] = app
        data["window"] = {"schedule": f"{opening.minute} {opening.hour} * * *",
                          "duration": "1s", "timezone": "UTC"}
        data["tag_policy"]["settle"] = "2s"

    path = str(demo_spec_copy(tmp_path, windowed))
    older, newer = f"{MAJOR}.7.0", f"{MAJOR}.8.0"
    for version, byte in ((older, "aa"), (newer, "bb")):
        state = release(spec_path=path, version=version, digest="sha256:" + byte * 32,
                        trigger="webhook", return_state=True)
        assert state.name == "Deferred", state
    with get_client(sync_client=True) as client:
        pending = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["pending", f"app:{app}"])))
        assert len(pending) == 2
        assert all(abs(r.expected_start_time - opening) < timedelta(seconds=1) for r in pending)
        by_version = {r.parameters["version"]: r for r in pending}
        timeout = (opening - datetime.now(UTC)).total_seconds() + 120
        done = {v: wait_until_final(r.id, timeout) for v, r in by_version.items()}
        assert done[older].state.name == "Skipped", done[older].state
        assert f"superseded by the newer request {newer}" in done[older].state.message
        assert done[newer].start_time >= opening - timedelta(seconds=1)
        assert "ImageNotFoundError" in done[newer].state.message, done[newer].state
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[done[newer].id]),
        ), limit=10)
        [report] = [a for a in artifacts if a.key == f"{app}-release-report"]
        assert "overran the window by" in report.data, report.data


def test_dry_run_checks_everything_and_changes_nothing():
    from tests.helpers import DEMO_SPEC, ferryman, record_of

    before = demo_status()
    done = ferryman("release", DEMO_SPEC, "--version", f"{MAJOR}.9.0", "--dry-run", "--json")
    record = record_of(done.stdout, done.stderr)
    assert done.returncode == 4 and record["outcome"] == "skipped", record
    assert record["reason"].startswith("dry run: would build")
    assert f"-> {MAJOR}.9.0" in record["reason"]
    absent = ferryman("release", DEMO_SPEC, "--version", f"{MAJOR}.9.0", "--dry-run",
                      "--digest", "sha256:" + "cd" * 32, "--json")
    assert absent.returncode == 1
    assert "ImageNotFoundError" in record_of(absent.stdout, absent.stderr)["reason"]
    assert demo_status() == before


def test_a_push_still_starts_a_release_while_500_idle_connections_are_open():
    """Idle or slow clients do not starve the registry's deliveries."""
    import socket

    idle = []
    try:
        for _ in range(500):
            idle.append(socket.create_connection(("127.0.0.1", 8470), timeout=5))
        version = f"{MAJOR}.11.0"
        pushed, _ = docker_push(version)
        [run] = wait_for_runs(version, timeout=60)
        assert run.created.timestamp() - pushed < 30
    finally:
        for connection in idle:
            connection.close()
    wait_until_final(run.id)
