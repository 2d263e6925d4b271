"""A release started from the Prefect deployment (as the UI does) runs in the stack's worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("demo")]


def test_deployment_run_is_executed_by_the_worker_and_promoted():
    from prefect.deployments import run_deployment

    version = f"1.5.0-d{int(time.time()) % 1_000_000}"
    run = run_deployment(
        "release/manual",
        parameters={"app": "demo", "version": version},
        timeout=600,
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.work_pool_name == "ferryman"
    assert run.name.endswith(f"-> {version}")
    assert "within thresholds" in run.state.message
    from tasks.platforms import get_target
    from tasks.spec import load_spec

    spec = load_spec(Path(__file__).parents[2] / "deployments" / "demo" / "release.yaml")
    status = get_target(spec).status()
    assert status.current.version == status.stable.version == version
