"""The Go tests of the demo app and of the traffic generator (the instrument behind every
exposure figure), run by `make test` like every other test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize(("program", "at_least"), [("demo-app", 9), ("traffic", 14)])
def test_the_go_tests_pass(program, at_least):
    go = shutil.which("go")
    assert go is not None, "no `go` on PATH: the examples' Go tests cannot run"
    done = subprocess.run([go, "test", "-count=1", "-v", "./..."],
                          cwd=ROOT / "examples" / program, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "CGO_ENABLED": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.findall(r"^--- PASS: (\S+)", done.stdout, re.MULTILINE)
    assert len(passed) >= at_least, (passed, done.stdout[-2000:])
