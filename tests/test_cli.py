"""The CLI's contract on bad input: exit 1, `outcome: failed` last, the problem named."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FERRYMAN = str(Path(sys.executable).parent / "ferryman")
DEMO = ROOT / "deployments" / "demo" / "release.yaml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FERRYMAN, *args], capture_output=True, text=True, timeout=120)


def broken_spec(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["analysis"]["metrics"][0]["threshold"] = {"min": 1, "max": 0}
    data["image"]["context"] = str((ROOT / "examples" / "demo-app").resolve())
    data["target"]["stack_file"] = str(DEMO.parent / "stack.yml")
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_invalid_spec_fails_before_anything_runs(tmp_path):
    done = run("release", str(broken_spec(tmp_path)), "--version", "9.9.9")
    assert done.returncode == 1
    assert done.stdout.strip().splitlines()[-1] == "outcome: failed"
    assert "analysis.metrics[0].threshold: min 1.0 is above max 0.0" in done.stderr
    assert "Beginning flow run" not in done.stderr  # no flow run was started


def test_invalid_version_fails_with_json_record(tmp_path):
    done = run("release", str(DEMO), "--version", "not a tag", "--json")
    assert done.returncode == 1
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["outcome"] == "failed" and "not a valid image tag" in record["reason"]


def test_bad_build_arg_is_refused():
    done = run("release", str(DEMO), "--version", "1.0.0", "--build-arg", "NOEQUALS")
    assert done.returncode == 1 and "expected KEY=VALUE" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "outcome: failed"


def test_validate_accepts_the_demo_spec():
    done = run("validate", str(DEMO))
    assert done.returncode == 0 and "valid (demo, swarm, rolling)" in done.stdout
