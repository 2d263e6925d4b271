"""`on_inconclusive: pause`: the run waits for a person's answer in Prefect, then obeys it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import demo_spec_copy, demo_status, record_of, release, start_release

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]


def pausing_spec(tmp_path: Path) -> Path:
    """The demo spec, but an inconclusive analysis waits for a person."""
    return demo_spec_copy(tmp_path, lambda data: data["analysis"].update(
        {"on_inconclusive": "pause", "inconclusive_limit": 0}
    ))


def paused_run_named(name: str, timeout: float = 180):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
            )
            if runs and runs[0].state and runs[0].state.is_paused():
                return runs[0]
            time.sleep(1)
    raise AssertionError(f"no paused run named {name!r} within {timeout:.0f}s")


def test_inconclusive_analysis_pauses_and_a_persons_rollback_is_obeyed(tmp_path):
    from prefect.flow_runs import resume_flow_run

    stable = demo_status()["stable"]
    if not stable:  # a first install has nothing to pause in front of
        stable = f"1.8.0-p{int(time.time()) % 1_000_000}"
        code, record = release(stable)
        assert code == 0, record["reason"]
    version = f"1.9.0-p{int(time.time()) % 1_000_000}"
    paused = start_release(version, "DISABLE_METRICS=1", spec=str(pausing_spec(tmp_path)))
    try:
        run = paused_run_named(f"demo {stable} -> {version}")
        resume_flow_run(run.id, run_input={"decision": "roll back",
                                           "comment": "no metrics, no go", "by": "the test"})
        out, err = paused.communicate(timeout=300)
    finally:
        paused.kill()
    assert paused.returncode == 3, err[-2000:]
    record = record_of(out, err)
    assert record["outcome"] == "rolled_back"
    assert record["reason"].startswith("inconclusive analysis (")
    assert "rejected by the test (no metrics, no go)" in record["reason"]
