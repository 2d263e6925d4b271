"""Faults injected for real into releases of the second example app on the local stack: a killed
release process, a killed worker, Prometheus stopped, Prefect's API frozen. Whatever
happens, the app ends on a judged version.

Each test prints how long the app took to serve its stable version again; docs/RELIABILITY.md
collects the figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import WEB_SPEC, ferryman, record_of, web_status
from tests.helpers import demo_spec_copy as spec_copy
from tests.helpers import release as release_of
from tests.helpers import start_release as start

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("web")]
APP = "web"
"""The second example app: these releases run beside the demo app's; the tests marked
`disruptive` (they stop or freeze a part of the stack) run alone, after everything else."""
disruptive = pytest.mark.disruptive


def release(version: str, *build_args: str):
    return release_of(version, *build_args, spec=WEB_SPEC)


def start_release(version: str, *build_args: str, spec: str = WEB_SPEC):
    return start(version, *build_args, spec=spec)


def web_spec_copy(tmp_path, change):
    return spec_copy(tmp_path, change, WEB_SPEC)

RUN = f"r{int(time.time()) % 1_000_000}"
RECOVERED_WITHIN = 300.0
"""The promise: a dead release's app serves its stable version again within 5 minutes."""


@pytest.fixture(scope="module")
def installed() -> str:
    version = f"5.0.0-{RUN}"
    code, record = release(version)
    assert code == 0, record["reason"]
    return version


@pytest.fixture
def stable(installed) -> str:
    """The app's stable version as the test starts (a test before it may have promoted one),
    judged: every test starts from, and must leave, an app on a judged version."""
    now = web_status()
    assert judged_on(now["stable"]), now
    return now["stable"]


def wait_until(check, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def running(version: str) -> bool:
    return web_status()["running"] == version


def judged_on(version: str) -> bool:
    """The app serves `version`, its stable one, on every replica, with nothing beside it and
    no release's mark left."""
    now = web_status()
    running_, desired = now["replicas"].split("/")
    return (now["running"] == now["stable"] == version and running_ == desired
            and now["beside_it"] is None and now["release_in_flight"] is None)


def flow_run_of(version: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            name=FlowRunFilterName(like_=f"-> {version}")))
    return runs[0] if runs else None


def test_killed_release_is_restored_at_once_by_ferryman_recover(stable):
    bad = f"5.1.0-{RUN}-bad"
    process = start_release(bad, "FAIL_RATE=0.5")
    wait_until(lambda: running(bad), 240, f"{bad} serving")
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic()

    done = ferryman("recover", WEB_SPEC, "--json")

    took = time.monotonic() - killed
    record = record_of(done.stdout, done.stderr)
    assert done.returncode == 3, record
    assert record["outcome"] == "rolled_back"
    assert f"{stable} restored and verified" in record["reason"], record["reason"]
    assert judged_on(stable), web_status()
    run = flow_run_of(bad)
    assert run.state.name == "Crashed", run.state
    print(f"\nSIGKILL of the CLI, then ferryman recover: stable again in {took:.1f} s")


def test_killed_release_is_restored_without_anyone_typing_anything(stable):
    bad = f"5.2.0-{RUN}-bad"
    process = start_release(bad, "FAIL_RATE=0.5")
    wait_until(lambda: running(bad), 240, f"{bad} serving")
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic()

    wait_until(lambda: judged_on(stable), RECOVERED_WITHIN, f"{stable} judged again",
               every=2)

    took = time.monotonic() - killed
    assert flow_run_of(bad).state.name == "Crashed"
    print(f"\nSIGKILL of the CLI, nothing typed: stable again in {took:.1f} s")


@disruptive
def test_killed_worker_and_its_run_are_recovered_by_themselves(stable):
    """The worker and the run it started die together (a host lost, say); a worker comes
    back, and Prefect's automation and the recover deployment do the rest."""
    from prefect.deployments import run_deployment

    from devstack.settings import StackPaths

    bad = f"5.3.0-{RUN}-bad"
    run_deployment("release/manual", parameters={
        "app": APP, "version": bad, "build_args": [{"name": "FAIL_RATE", "value": "0.5"}]},
        timeout=0)
    wait_until(lambda: running(bad), 300, f"{bad} serving")
    run = wait_until(lambda: flow_run_of(bad), 30, "the release run")
    process = [t for t in run.tags if t.startswith("process:")]
    assert process, run.tags
    child = int(process[0].rsplit(":", 1)[1])
    record = json.loads(StackPaths.default().record.read_text())
    os.kill(record["worker_pid"], signal.SIGKILL)
    os.kill(child, signal.SIGKILL)
    killed = time.monotonic()
    up = ferryman("stack", "up", timeout=600)  # a worker comes back, as a supervisor would
    assert up.returncode == 0, up.stderr

    wait_until(lambda: judged_on(stable), RECOVERED_WITHIN, f"{stable} judged again",
               every=2)

    took = time.monotonic() - killed
    print(f"\nworker and its run SIGKILLed: stable again in {took:.1f} s")


@disruptive
def test_prometheus_stopped_during_the_analysis_never_promotes(tmp_path, stable):
    good = f"5.4.0-{RUN}"
    process = start_release(good)
    try:
        wait_until(lambda: running(good), 240, f"{good} serving")
        subprocess.run(["docker", "stop", "ferryman-prometheus"], check=True,
                       capture_output=True)
        out, err = process.communicate(timeout=600)
    finally:
        process.kill()
        subprocess.run(["docker", "start", "ferryman-prometheus"], capture_output=True)
    record = record_of(out, err)
    assert (process.returncode, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert "consecutive errors" in record["reason"] and "unreachable" in record["reason"]
    assert f"{stable} restored, but could not verify it" in record["reason"]
    assert judged_on(stable), web_status()


@disruptive
def test_prefect_api_frozen_for_a_minute_during_a_verify_still_ends_judged(stable):
    from devstack.settings import StackPaths

    good = f"5.5.0-{RUN}"
    record = json.loads(StackPaths.default().record.read_text())
    server = record["prefect_pid"]
    process = start_release(good)
    try:
        wait_until(lambda: running(good), 240, f"{good} serving")
        time.sleep(5)  # inside the analysis
        os.kill(server, signal.SIGSTOP)
        time.sleep(60)
        os.kill(server, signal.SIGCONT)
        out, err = process.communicate(timeout=900)
    finally:
        os.kill(server, signal.SIGCONT)
        process.kill()
    result = record_of(out, err)
    assert process.returncode in (0, 3), result
    version = good if result["outcome"] == "promoted" else stable
    assert judged_on(version), web_status()
    print(f"\nPrefect frozen 60 s mid-verify: {result['outcome']} ({result['reason']})")


def test_a_paused_release_of_a_dead_process_is_not_waited_for(tmp_path, stable):
    """A release that died while waiting for a person holds no lock: the next release goes."""
    spec = web_spec_copy(tmp_path, lambda d: d["analysis"].update(
        {"on_inconclusive": "pause", "inconclusive_limit": 0}))
    silent = f"5.6.0-{RUN}-silent"
    process = start_release(silent, "DISABLE_METRICS=1", spec=str(spec))
    wait_until(lambda: (run := flow_run_of(silent)) and run.state.is_paused(), 300,
               "the pause")
    process.send_signal(signal.SIGKILL)
    process.wait()

    code, record = release(f"5.7.0-{RUN}")

    assert code == 0, record["reason"]
    assert flow_run_of(silent).state.name == "Crashed"


def test_cancel_from_the_prefect_api_mid_canary_restores_and_ends_cancelled(tmp_path, stable):
    """Cancel in the UI is a Cancelling state: the release sees it between its steps,
    restores the stable version and ends Cancelled, named Aborted."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    spec = web_spec_copy(tmp_path, lambda d: d.update({"strategy": {
        "kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"weight": 50},
                                    {"analysis": {}}]}}))
    version = f"5.8.0-{RUN}"
    process = start_release(version, spec=str(spec))
    try:
        run = wait_until(lambda: (r := flow_run_of(version)) and "canary" in web_beside()
                         and r, 240, "the canary")
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="cancelled by the test"))
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    record = record_of(out, err)
    assert (process.returncode, record["outcome"]) == (3, "aborted"), record["reason"]
    assert "cancelled in the Prefect UI or API" in record["reason"]
    assert flow_run_of(version).state.type.value == "CANCELLED"
    assert judged_on(stable), web_status()


def web_beside() -> str:
    return str(web_status()["beside_it"] or "")


@disruptive
def test_docker_engine_restarted_mid_release_is_retried_then_the_release_ends_judged(stable):
    """The engine goes away as the build ends (the push, or the step after it when the push
    was quicker): the step fails to reach it, is retried (a transient error), and once the
    engine is back the release goes on to a judged end."""
    from devstack.settings import StackPaths

    record = json.loads(StackPaths.default().record.read_text())
    if not record.get("dockerd_pid"):
        pytest.skip("the stack did not start this Docker engine; it will not restart it")
    version = f"5.9.0-{RUN}"
    process = start_release(version)
    try:
        wait_until(lambda: _task_state(version, "package") == "COMPLETED", 240, "the build")
        os.kill(record["dockerd_pid"], signal.SIGTERM)
        stopped = time.monotonic()
        # Gone for good: its process ended (the API goes some seconds earlier).
        wait_until(lambda: not os.path.exists(f"/proc/{record['dockerd_pid']}"), 120,
                   "the engine stopping")
        up = ferryman("stack", "up", timeout=600)
        assert up.returncode == 0, up.stderr
        print(f"\nDocker engine back in {time.monotonic() - stopped:.1f} s")
        out, err = process.communicate(timeout=900)
    finally:
        process.kill()
    result = record_of(out, err)
    assert result["outcome"] in ("promoted", "rolled_back"), result
    retried = {t.name: t.run_count for t in _tasks(version, "") if t.run_count > 1}
    assert retried, "no step was retried"
    version_now = version if result["outcome"] == "promoted" else stable
    wait_until(lambda: judged_on(version_now), 300, f"{version_now} judged")
    print(f"Docker engine restarted after the build: retried {retried}; {result['outcome']} "
          f"({result['reason'][:120]})")


def _task_state(version: str, name: str) -> str | None:
    tasks = _tasks(version, name)
    return tasks[0].state.type.value if tasks and tasks[0].state else None


def _tasks(version: str, name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    run = flow_run_of(version)
    if run is None:
        return []
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)))
