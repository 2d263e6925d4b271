"""One release per app at a time: a second release of the same app waits for the first."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "deployments" / "demo" / "release.yaml")
FERRYMAN = str(Path(sys.executable).parent / "ferryman")


def test_second_release_of_an_app_waits_and_starts_from_the_first_ones_result():
    run = int(time.time()) % 1_000_000
    versions = [f"1.6.0-c{run}", f"1.6.1-c{run}"]
    started = []
    for version in versions:
        started.append(subprocess.Popen(
            [FERRYMAN, "release", SPEC, "--version", version, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        ))
        time.sleep(1)
    records = []
    for process in started:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        records.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["outcome"] for r in records] == ["promoted", "promoted"]
    # Had both read what runs before either deployed, each would name the same version
    # as its previous one. Serialised, the later one starts from the earlier one's result.
    first, second = sorted(records, key=lambda r: r["previous_version"] in versions)
    assert second["previous_version"] == first["version"]
    assert first["previous_version"] not in versions
