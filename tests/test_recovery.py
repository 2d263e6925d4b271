"""What recovery decides without a Prefect server: whose lock, whose process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from uuid import uuid4

from flows.liveness import process_gone
from flows.tags import LEASE_TAG, PROCESS_TAG, lease_of, process_tag


def test_the_lease_a_run_holds_is_read_from_its_tags():
    lease = uuid4()
    assert lease_of(["app:demo", f"{LEASE_TAG}{lease}", "trigger:cli"]) == lease
    assert lease_of(["app:demo"]) is None
    assert lease_of([f"{LEASE_TAG}not-a-uuid"]) is None


def test_a_process_of_this_host_that_is_gone_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    tags = [f"{PROCESS_TAG}{socket.gethostname()}:{child.pid}"]
    assert process_gone(tags) == f"its process {child.pid} on {socket.gethostname()} is gone"


def test_a_living_process_is_not_dead():
    assert process_tag() == f"{PROCESS_TAG}{socket.gethostname()}:{os.getpid()}"
    assert process_gone([process_tag()]) is None


def test_a_process_on_another_host_is_never_judged_from_here():
    assert process_gone([f"{PROCESS_TAG}elsewhere.example:1"]) is None
    assert process_gone(["app:demo"]) is None
