"""`on_inconclusive: pause`: the run waits for a person's answer in Prefect, then obeys it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deployments" / "demo" / "release.yaml"
FERRYMAN = str(Path(sys.executable).parent / "ferryman")


def pausing_spec(tmp_path: Path) -> Path:
    """The demo spec, but an inconclusive analysis waits for a person."""
    data = yaml.safe_load(DEMO.read_text())
    data["analysis"].update({"on_inconclusive": "pause", "inconclusive_limit": 0})
    data["image"]["context"] = str(ROOT / "examples" / "demo-app")
    data["target"]["stack_file"] = str(DEMO.parent / "stack.yml")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


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

    stable = json.loads(
        subprocess.run([FERRYMAN, "status", str(DEMO), "--json"], capture_output=True,
                       text=True, check=True).stdout
    )["stable"]
    if not stable:  # a first install has nothing to pause in front of
        stable = f"1.8.0-p{int(time.time()) % 1_000_000}"
        done = subprocess.run([FERRYMAN, "release", str(DEMO), "--version", stable],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:]
    version = f"1.9.0-p{int(time.time()) % 1_000_000}"
    release = subprocess.Popen(
        [FERRYMAN, "release", str(pausing_spec(tmp_path)), "--version", version, "--json",
         "--build-arg", "DISABLE_METRICS=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        run = paused_run_named(f"demo {stable} -> {version}")
        resume_flow_run(run.id, run_input={"promote": False, "comment": "no metrics, no go"})
        out, err = release.communicate(timeout=300)
    finally:
        release.kill()
    assert release.returncode == 3, err[-2000:]
    record = json.loads(out.strip().splitlines()[-1])
    assert record["outcome"] == "rolled_back"
    assert record["reason"].startswith("rolled back by a person after:")
    assert "no metrics, no go" in record["reason"]
