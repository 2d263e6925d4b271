"""Blue-green, canary, approvals and aborts of the second example app, `web`, on the real
stack.

What users saw is read from the traffic generator's own counters in Prometheus
(`traffic_responses_total{app, target, version, code}`): `main` is the app's address, which
every user gets, `preview` the blue-green preview address.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.helpers import (
    WEB_SPEC,
    assert_share_within,
    demo_spec_copy,
    ferryman,
    record_of,
    release,
    start_release,
    web_status,
)

APP = "web"
"""The second example app: these releases run beside the demo app's."""
pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("web")]

PROMETHEUS = "http://127.0.0.1:9090/api/v1/query"
RUN = f"s{int(time.time()) % 1_000_000}"


def answers(target: str) -> dict[tuple[str, str], float]:
    """Cumulative answers the traffic generator got from the app's `target` address,
    per (version, code)."""
    body = httpx.get(PROMETHEUS, params={
        "query": f'sum by (version, code) (traffic_responses_total{{app="{APP}",'
                 f'target="{target}"}})'
    }, timeout=10).json()
    return {(r["metric"].get("version", ""), r["metric"].get("code", "")): float(r["value"][1])
            for r in body["data"]["result"]}


def answered_by(before: dict, after: dict, version: str) -> float:
    """Answers of `version` between two readings of `answers`."""
    return sum(n - before.get(key, 0.0) for key, n in after.items() if key[0] == version)


def total(before: dict, after: dict) -> float:
    return sum(n - before.get(key, 0.0) for key, n in after.items())


def settle() -> None:
    """Two scrapes of the traffic generator, so its counters in Prometheus are current."""
    time.sleep(5)


def web_spec(tmp_path, strategy: dict, **analysis):
    """The web app's spec with the given strategy and a shorter analysis."""
    return demo_spec_copy(tmp_path, quick(strategy, **analysis), WEB_SPEC)


def quick(strategy: dict, **analysis):
    """A spec change: the given strategy, and a shorter analysis than the demo's."""

    def change(data: dict) -> None:
        data["strategy"] = strategy
        data["analysis"].update({"count": 3, "interval": "3s", "initial_delay": "10s",
                                 **analysis})

    return change


@pytest.fixture(scope="module")
def stable() -> str:
    """A good version, promoted: what every failed release below must restore."""
    version = f"3.0.0-{RUN}"
    code, record = release(version, spec=WEB_SPEC)
    assert code == 0, record["reason"]
    return version


def assert_only_stable_serving(version: str) -> None:
    """The app's service runs `version` on every replica and nothing runs beside it."""
    import docker

    now = web_status()
    assert (now["running"], now["stable"]) == (version, version), now
    running, desired = now["replicas"].split("/")
    assert running == desired == "2", now
    names = {s.name for s in docker.from_env().services.list()}
    assert not {f"{APP}-canary", f"{APP}-preview"} & names, names


def test_blue_green_is_promoted_and_leaves_no_preview(tmp_path, stable):
    spec = web_spec(tmp_path, {"kind": "blue-green", "scale_down_delay": "5s"})
    version = f"3.1.0-{RUN}"
    before = answers("preview")
    code, record = release(version, spec=str(spec))
    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    assert {m["step"] for m in record["measurements"]} == {"preview", "switched"}
    settle()
    assert answered_by(before, answers("preview"), version) > 0  # the preview was driven
    assert_only_stable_serving(version)


def test_blue_green_bad_version_never_answers_on_the_main_address(tmp_path, stable):
    current = web_status()["stable"]
    spec = web_spec(tmp_path, {"kind": "blue-green"})
    bad = f"3.2.0-{RUN}-bad"
    main, preview = answers("main"), answers("preview")
    code, record = release(bad, "FAIL_RATE=0.5", spec=str(spec))
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert record["reason"].startswith("before the switch (no user got it): error-rate")
    settle()
    assert answered_by(main, answers("main"), bad) == 0
    assert answered_by(preview, answers("preview"), bad) > 0
    assert_only_stable_serving(current)


def test_blue_green_switches_back_after_a_failed_post_switch_analysis(tmp_path, stable):
    current = web_status()["stable"]
    spec = web_spec(tmp_path, {"kind": "blue-green", "preview_analysis": False})
    bad = f"3.3.0-{RUN}-bad"
    main = answers("main")
    code, record = release(bad, "FAIL_RATE=0.5", spec=str(spec))
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert record["reason"].startswith("after the switch: error-rate")
    steps = {s["name"]: s for s in record["steps"]}
    # The switch back (the stable service scaled up from its image on the node) is quick.
    assert steps["roll back"]["end"] - steps["roll back"]["start"] < 30, steps
    settle()
    assert answered_by(main, answers("main"), bad) > 0  # it did serve users, after the switch
    assert_only_stable_serving(current)


CANARY = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}}, {"weight": 50},
                                      {"analysis": {}}]}


def test_canary_is_promoted_through_two_steps(tmp_path, stable):
    spec = web_spec(tmp_path, CANARY)
    version = f"3.4.0-{RUN}"
    code, record = release(version, spec=str(spec))
    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    assert {m["step"] for m in record["measurements"]} == {"canary-33", "canary-50"}
    assert record["notes"] == ["step 1: canary at 33% (asked 33%)",
                               "step 3: canary at 50% (asked 50%)"]
    assert_only_stable_serving(version)


def test_canary_bad_version_is_rolled_back_at_the_first_step_within_its_share(tmp_path, stable):
    current = web_status()["stable"]
    spec = web_spec(tmp_path, CANARY)
    bad = f"3.5.0-{RUN}-bad"
    main = answers("main")
    code, record = release(bad, "FAIL_RATE=0.5", spec=str(spec))
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert record["reason"].startswith("step 2 (canary at 33%)"), record["reason"]
    settle()
    after = answers("main")
    # Of the answers while the canary served (from its first to its last), its share: no more
    # than a 33% share allows.
    served = answered_by(main, after, bad)
    assert served > 0
    window = _canary_window(bad)
    assert_share_within(_answered_between(bad, *window), _all_between(*window), 33)
    assert_only_stable_serving(current)


def _range(query: str, start: float, end: float) -> float:
    body = httpx.get("http://127.0.0.1:9090/api/v1/query", params={
        "query": query.replace("RANGE", f"{max(1, int(end - start))}s"), "time": end,
    }, timeout=10).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _canary_window(version: str) -> tuple[float, float]:
    """From the first to the last moment (2 s resolution, last 10 minutes) in which the
    traffic generator got answers of `version` on the app's address."""
    end = time.time()
    body = httpx.get("http://127.0.0.1:9090/api/v1/query_range", params={
        "query": f'sum(increase(traffic_responses_total{{app="{APP}",target="main",'
                 f'version="{version}"}}[4s]))',
        "start": end - 600, "end": end, "step": 2,
    }, timeout=10).json()
    stamps = [float(t) for r in body["data"]["result"] for t, v in r["values"] if float(v) > 0]
    assert stamps, f"no answers of {version} on the main address"
    return min(stamps) - 4, max(stamps)


def _answered_between(version: str, start: float, end: float) -> float:
    return _range(f'sum(increase(traffic_responses_total{{app="{APP}",target="main",'
                  f'version="{version}"}}[RANGE]))', start, end)


def _all_between(start: float, end: float) -> float:
    return _range(f'sum(increase(traffic_responses_total{{app="{APP}",target="main"}}[RANGE]))',
                  start, end)


def paused_release(name_part: str, timeout: float = 240):
    from flows.approval import paused_run_of

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = paused_run_of(APP)
        if run is not None and name_part in run.name:
            return run
        time.sleep(1)
    raise AssertionError(f"no paused release of {APP} {name_part} within {timeout:.0f}s")


APPROVED = {"kind": "canary", "steps": [{"weight": 33}, {"analysis": {}},
                                        {"approve": {"timeout": "3m"}}]}


def test_an_approval_through_the_prefect_api_resumes_the_canary(tmp_path, stable):
    from prefect.flow_runs import resume_flow_run

    spec = web_spec(tmp_path, APPROVED)
    version = f"3.6.0-{RUN}"
    process = start_release(version, spec=str(spec))
    try:
        run = paused_release(version)
        resume_flow_run(run.id, run_input={"decision": "promote", "comment": "graphs fine",
                                           "by": "the release test"})
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    record = record_of(out, err)
    assert (process.returncode, record["outcome"]) == (0, "promoted"), record["reason"]
    assert "approved by the release test (graphs fine)" in record["reason"]
    assert_only_stable_serving(version)


def test_an_unanswered_approval_rolls_back_when_it_times_out(tmp_path, stable):
    current = web_status()["stable"]
    strategy = {**APPROVED, "steps": [*APPROVED["steps"][:2], {"approve": {"timeout": "5s"}}]}
    spec = web_spec(tmp_path, strategy)
    code, record = release(f"3.7.0-{RUN}", spec=str(spec))
    assert (code, record["outcome"]) == (3, "rolled_back"), record["reason"]
    assert "no answer in time: rolled back" in record["reason"]
    assert_only_stable_serving(current)


def test_ferryman_approve_answers_from_a_terminal(tmp_path, stable):
    current = web_status()["stable"]
    spec = web_spec(tmp_path, APPROVED)
    version = f"3.8.0-{RUN}"
    process = start_release(version, spec=str(spec))
    try:
        paused_release(version)
        answered = ferryman("approve", str(spec), "--reject", "--comment", "not now", "--json")
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert record_of(out, err)["outcome"] == "rolled_back"
    record = record_of(answered.stdout, answered.stderr)
    assert answered.returncode == 3 and "rejected by" in record["reason"], record
    assert "with ferryman approve (not now)" in record["reason"]
    assert_only_stable_serving(current)


def test_ferryman_abort_mid_canary_leaves_only_the_old_version(tmp_path, stable):
    current = web_status()["stable"]
    spec = web_spec(tmp_path, CANARY)
    version = f"3.9.0-{RUN}"
    process = start_release(version, spec=str(spec))
    try:
        _wait_for_service(f"{APP}-canary", replicas=1)
        aborted = ferryman("abort", str(spec), "--json")
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    record = record_of(out, err)
    assert (process.returncode, record["outcome"]) == (3, "aborted"), record["reason"]
    assert "aborted: by" in record["reason"] and "with ferryman abort" in record["reason"]
    assert f"{current} restored and verified" in record["reason"]
    assert record_of(aborted.stdout, aborted.stderr)["outcome"] == "aborted"
    assert_only_stable_serving(current)


def _wait_for_service(name: str, replicas: int, timeout: float = 120) -> None:
    import docker

    client = docker.from_env()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in client.services.list(filters={"name": name}):
            running = [t for t in service.tasks() if t["Status"]["State"] == "running"]
            if service.name == name and len(running) >= replicas:
                return
        time.sleep(1)
    raise AssertionError(f"service {name} did not run {replicas} task(s) in {timeout:.0f}s")


def test_the_release_form_offers_only_what_a_person_chooses():
    """The Run form of release/manual: app and strategy are choices; no bookkeeping."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("release/manual")
    schema = deployment.parameter_openapi_schema
    assert set(schema["properties"]) == {"app", "version", "digest", "strategy", "dry_run",
                                         "ignore_window", "build_args"}
    assert schema["required"] == ["app", "version"]
    definitions = schema.get("definitions", {})
    app = schema["properties"]["app"]
    app_choices = definitions[app["$ref"].rsplit("/", 1)[-1]]["enum"] if "$ref" in app \
        else app["enum"]
    assert "demo" in app_choices
    assert schema["properties"]["strategy"]["enum"] == [
        "as the spec says", "rolling", "blue-green", "canary"]
    assert schema["properties"]["build_args"]["type"] == "array"
    item = schema["properties"]["build_args"]["items"]
    item = definitions[item["$ref"].rsplit("/", 1)[-1]] if "$ref" in item else item
    assert set(item["properties"]) == {"name", "value"}


def test_release_form_runs_in_the_worker_with_a_strategy_chosen(stable):
    from prefect.deployments import run_deployment

    version = f"3.10.0-{RUN}"
    run = run_deployment("release/manual", parameters={
        "app": APP, "version": version, "strategy": "canary"}, timeout=900)
    assert run.state is not None and run.state.is_completed(), run.state
    assert "strategy:canary" in run.tags
    assert_only_stable_serving(version)

