"""Whole releases of the demo app through the `ferryman` CLI, on the real local stack.

Each bad version is an image built with other build args, released over a good baseline;
every rollback must leave the baseline serving on every replica.
"""

from __future__ import annotations

import time

import pytest

from tests.helpers import DEMO_SPEC, demo_status, ferryman, release

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]

RUN = f"t{int(time.time()) % 1_000_000}"


@pytest.fixture(scope="module")
def baseline() -> dict:
    """A good version, promoted: what every failed release below must restore."""
    code, record = release(f"1.0.0-{RUN}")
    assert (code, record["outcome"]) == (0, "promoted"), record["reason"]
    return record


def assert_shown_in_prefect(record: dict, state: str, event: str) -> None:
    """The run is named and tagged, ends in `state`, carries the artifacts, emitted `event`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterName,
    )
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    name = f"demo {record['previous_version'] or 'new'} -> {record['version']}"
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )
        assert len(runs) == 1, f"no single flow run named {name!r}: {runs}"
        run = runs[0]
        assert run.state.name == state
        assert {"app:demo", "target:swarm", "strategy:rolling", "trigger:cli"} <= set(run.tags)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        by_key = {a.key: a for a in artifacts}
        assert {"demo-release-report", "demo-analysis", "demo-release-history"} <= set(by_key)
        report = by_key["demo-release-report"].data
        assert record["version"] in report and f"Outcome: {record['outcome']}" in report
        for _ in range(30):  # events reach the server asynchronously
            wanted = EventFilter(  # `occurred.until` defaults to the filter's creation
                occurred=EventOccurredFilter(since=run.start_time),
                event=EventNameFilter(name=[f"ferryman.release.{event}"]),
                resource=EventResourceFilter(id=["ferryman.app.demo"]),
            )
            # The client's default page (100) is above the server's maximum (50).
            events = client.read_events(filter=wanted, limit=50).events
            if any(e.payload.get("version") == record["version"] for e in events):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no ferryman.release.{event} event for {record['version']}")


def assert_baseline_serving(baseline: dict) -> None:
    now = demo_status()
    assert now["running"] == baseline["version"]
    assert now["running_image"] == baseline["image"]
    assert now["stable"] == baseline["version"]
    running, desired = now["replicas"].split("/")
    assert running == desired != "0"


def test_good_release_is_promoted_and_recorded(baseline):
    assert baseline["digest"].startswith("sha256:")
    assert baseline["image"].endswith("@" + baseline["digest"])
    phases = {m["phase"] for m in baseline["measurements"]}
    assert "successful" in phases and not phases & {"failed", "error"}
    assert {m["metric"] for m in baseline["measurements"]} == {"error-rate", "latency-p95"}
    assert_baseline_serving(baseline)
    assert_shown_in_prefect(baseline, "Completed", "promoted")


def test_rolls_back_when_error_rate_exceeds_max(baseline):
    code, record = release(f"1.1.0-{RUN}-errors", "FAIL_RATE=0.5")
    assert (code, record["outcome"]) == (3, "rolled_back")
    assert record["previous_version"] == baseline["version"]
    assert "error-rate" in record["reason"] and "above max 0.05" in record["reason"]
    failed = [m for m in record["measurements"] if m["phase"] == "failed"]
    assert failed and failed[-1]["value"] > 0.05
    # The rollback was verified on the restored version, with measurements of its own.
    restored = record["rollback_measurements"]
    assert restored and {m["version"] for m in restored} == {baseline["version"]}
    assert_baseline_serving(baseline)
    assert_shown_in_prefect(record, "RolledBack", "rolled-back")


def test_rolls_back_when_latency_exceeds_max(baseline):
    code, record = release(f"1.1.0-{RUN}-slow", "EXTRA_LATENCY_MS=400")
    assert (code, record["outcome"]) == (3, "rolled_back")
    assert "latency-p95" in record["reason"]
    slow = [m for m in record["measurements"] if m["metric"] == "latency-p95"]
    assert slow[-1]["phase"] == "failed" and slow[-1]["value"] > 0.25
    assert_baseline_serving(baseline)


def test_rolls_back_a_version_that_crashes_on_start(baseline):
    code, record = release(f"1.1.0-{RUN}-crash", "CRASH_ON_START=1")
    assert (code, record["outcome"]) == (3, "rolled_back")
    assert record["reason"].startswith("deploy failed")
    assert record["measurements"] == []  # never analysed: it never ran
    assert_baseline_serving(baseline)


def test_never_promotes_a_version_without_metrics(baseline):
    code, record = release(f"1.1.0-{RUN}-dark", "DISABLE_METRICS=1")
    assert (code, record["outcome"]) == (3, "rolled_back")
    assert "inconclusive" in record["reason"]
    phases = {m["phase"] for m in record["measurements"]}
    assert phases == {"inconclusive"}
    assert_baseline_serving(baseline)


def test_rollback_command_restores_and_verifies_the_previous_version(baseline):
    code, newer = release(f"1.2.0-{RUN}")
    assert (code, newer["outcome"]) == (0, "promoted")
    assert demo_status()["previous"] == baseline["version"]
    done = ferryman("rollback", DEMO_SPEC)
    assert done.returncode == 3, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "outcome: rolled_back"
    assert_baseline_serving(baseline)
