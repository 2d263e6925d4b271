"""Wall time of a promoted and of a rolled-back release of the demo app, on the local stack.

Prints, from one run: each release's wall time and its steps, and for the rolled-back
one the time from the bad version serving (deploy done) to the previous version serving
again (rollback done). Run with `make bench` (brings the stack up first).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "deployments" / "demo" / "release.yaml")
FERRYMAN = str(Path(sys.executable).parent / "ferryman")


def release(version: str, *build_args: str) -> tuple[float, dict]:
    args = [FERRYMAN, "release", SPEC, "--version", version, "--json"]
    for pair in build_args:
        args += ["--build-arg", pair]
    start = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - start
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, record


def main() -> None:
    run = f"b{int(time.time()) % 1_000_000}"
    rows = []
    for label, version, args in (
        ("promoted", f"2.0.0-{run}", ()),
        ("rolled back (FAIL_RATE=0.5)", f"2.1.0-{run}-bad", ("FAIL_RATE=0.5",)),
    ):
        wall, record = release(version, *args)
        rows.append((label, wall, record))
    print(f"{'release':<30} {'outcome':<12} {'wall s':>7}  steps (s)")
    for label, wall, record in rows:
        steps = ", ".join(f"{s['name']} {s['end'] - s['start']:.1f}" for s in record["steps"])
        print(f"{label:<30} {record['outcome']:<12} {wall:>7.1f}  {steps}")
    print(f"rolled-back / promoted wall time ratio: {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
