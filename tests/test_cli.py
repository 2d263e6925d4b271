"""The CLI's contract on bad input: exit 1, `outcome: failed` last, the problem named."""

import subprocess
from pathlib import Path

from tests.helpers import DEMO_SPEC, demo_spec_copy, ferryman, record_of

DEMO = DEMO_SPEC


def run(*args: str) -> subprocess.CompletedProcess:
    return ferryman(*args, timeout=120)


def broken_spec(tmp_path: Path) -> Path:
    def min_above_max(data: dict) -> None:
        data["analysis"]["metrics"][0]["threshold"] = {"min": 1, "max": 0}

    return demo_spec_copy(tmp_path, min_above_max)


def test_invalid_spec_fails_before_anything_runs(tmp_path):
    done = run("release", str(broken_spec(tmp_path)), "--version", "9.9.9")
    assert done.returncode == 1
    assert done.stdout.strip().splitlines()[-1] == "outcome: failed"
    assert "analysis.metrics[0].threshold: min 1.0 is above max 0.0" in done.stderr
    assert "Beginning flow run" not in done.stderr  # no flow run was started


def test_invalid_version_fails_with_json_record(tmp_path):
    done = run("release", DEMO, "--version", "not a tag", "--json")
    assert done.returncode == 1
    record = record_of(done.stdout, done.stderr)
    assert record["outcome"] == "failed" and "not a valid image tag" in record["reason"]


def test_bad_build_arg_is_refused():
    done = run("release", DEMO, "--version", "1.0.0", "--build-arg", "NOEQUALS")
    assert done.returncode == 1 and "expected KEY=VALUE" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "outcome: failed"


def test_validate_accepts_the_demo_spec():
    done = run("validate", DEMO)
    assert done.returncode == 0 and "valid (demo, swarm, rolling)" in done.stdout
