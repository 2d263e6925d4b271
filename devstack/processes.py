"""The host processes the local stack and the Kubernetes test bed start, and their record.

`spawn` starts a process in its own session and records its pid and start time in a record
(a dict); `alive` tells whether a recorded process still runs and is that same process;
`stop` stops it with its group and forgets it; `wait_for` waits until something answers.
`read_record` and `write_record` keep a record as a JSON file under the state folder
(devstack/stack.py's `stack.json`, devstack/cluster.py's `cluster.json`). `Say` is how they
all report a line. Shared by devstack/stack.py and devstack/cluster.py; it imports neither.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tasks.errors import StackError

Say = Callable[[str], None]


def read_record(file: Path) -> dict:
    """The record kept in `file`; empty when there is none (or it cannot be read)."""
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return {}


def write_record(file: Path, record: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(record, indent=2))


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None,
             happen: str = "come up"):
    """Wait until `check()`; a StackError "<what> did not <happen> within ..." at the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    hint = f"; see {log}" if log else ""
    raise StackError(f"{what} did not {happen} within {timeout:.0f}s{hint}")


def _private_log(log: Path) -> int:
    """Open `log` for appending, readable by root only, in a folder only root can enter:
    what the stack's programs print may name a secret (a URL token, a header)."""
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.parent.chmod(0o700)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # a log an older `up` made with the umask's mode
    return fd


def spawn(args: list[str], log: Path, record: dict, name: str,
          env: dict[str, str] | None = None) -> int:
    """Start a host process in its own session (so `down` can stop its whole group), and
    record it as `name`: its pid and its start time, so that `down` stops that process and
    never another that got the same pid later."""
    fd = _private_log(log)
    try:
        process = subprocess.Popen(
            args, stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
    finally:
        os.close(fd)
    record[f"{name}_pid"] = process.pid
    record[f"{name}_started"] = _start_time(process.pid)
    return process.pid


_PROGRAMS = {
    "dockerd": "dockerd", "prefect": "prefect", "worker": "prefect",
    "registry": "docker-registry", "receiver": "ferryman",
}
"""What each recorded process runs: how a record written before start times were recorded
is still checked (its command line must name the program)."""


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (the state) on; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces


def _start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks after boot (field 22 of /proc/<pid>/stat)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def alive(record: dict, name: str) -> bool:
    """Whether the process `up` recorded as `name` still runs, and is that same process.

    A pid is reused once its process is gone: the start time recorded at spawn (or, for an
    older record, the program in its command line) tells a recycled pid apart.
    """
    pid = record.get(f"{name}_pid")
    if not pid:
        return False
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":  # a zombie is not alive
        return False
    started = record.get(f"{name}_started")
    if started is not None:
        return int(fields[19]) == started
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # A script's argv[0] is its interpreter: the program is the first or second word.
    return _PROGRAMS.get(name, name) in {Path(a.decode(errors="replace")).name for a in argv[:2]}


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop(record: dict, name: str, say: Say, grace: float = 20.0) -> None:
    """Stop the process `up` recorded as `name` (and its group), and forget it.

    A recorded pid that now belongs to another process is left alone.
    """
    pid = record.get(f"{name}_pid")
    if not pid:
        return
    if not alive(record, name):
        if _stat(pid) is not None:
            say(f"{name}: pid {pid} is another process now: left alone")
    else:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(record, name) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(record, name):
            _signal_group(pid, signal.SIGKILL)
        say(f"{name}: stopped (pid {pid})")
    record.pop(f"{name}_pid", None)
    record.pop(f"{name}_started", None)
