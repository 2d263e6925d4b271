"""Small helpers shared by the tests."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml


class Lines(list):
    """A Progress callback that keeps the lines."""

    def __call__(self, line: str) -> None:
        self.append(line)


def changed(data: dict, path: str, value) -> dict:
    """A deep copy of `data` with the value at dotted `path` replaced (KeyError: removed).

    Integer parts index lists: `events.1.target.tag`.
    """
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


# -- the `ferryman` command, as the tests that drive it as a subprocess use it ------------

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = str(ROOT / "deployments" / "demo" / "release.yaml")
WEB_SPEC = str(ROOT / "deployments" / "web" / "release.yaml")
"""The second example app: tests that release it run beside the demo app's."""
FERRYMAN = str(Path(sys.executable).parent / "ferryman")


def ferryman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `ferryman ARGS` from the checkout and wait for it."""
    return subprocess.run(
        [FERRYMAN, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def release_args(version: str, *build_args: str, spec: str = DEMO_SPEC) -> list[str]:
    """`release SPEC --version V --json` with a `--build-arg` per KEY=VALUE."""
    args = ["release", spec, "--version", version, "--json"]
    for pair in build_args:
        args += ["--build-arg", pair]
    return args


def start_release(version: str, *build_args: str, spec: str = DEMO_SPEC) -> subprocess.Popen:
    """Start `ferryman release --json` without waiting (for tests that act meanwhile)."""
    return subprocess.Popen(
        [FERRYMAN, *release_args(version, *build_args, spec=spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


def record_of(stdout: str, stderr: str) -> dict:
    """The JSON record `--json` prints as its last line."""
    lines = stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{stderr[-3000:]}"
    return json.loads(lines[-1])


def release(version: str, *build_args: str, spec: str = DEMO_SPEC) -> tuple[int, dict]:
    """Run `ferryman release --json`; return the exit code and the JSON record."""
    done = ferryman(*release_args(version, *build_args, spec=spec))
    return done.returncode, record_of(done.stdout, done.stderr)


def demo_status(spec: str = DEMO_SPEC) -> dict:
    """`ferryman status --json` of the demo app (or of the app of `spec`)."""
    done = ferryman("status", spec, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def web_status() -> dict:
    """`ferryman status --json` of the second example app, web."""
    return demo_status(WEB_SPEC)


def demo_spec_copy(tmp_path: Path, change: Callable[[dict], None],
                   spec: str = DEMO_SPEC) -> Path:
    """The demo spec (or `spec`), changed by `change`, written to tmp_path with its paths
    made absolute."""
    data = yaml.safe_load(Path(spec).read_text())
    data["image"]["context"] = str(ROOT / "examples" / "demo-app")
    data["target"]["stack_file"] = str(Path(spec).parent / "stack.yml")
    change(data)
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_share_within(count: float, total: float, weight: float, z: float = 4.0) -> None:
    """Assert that `count` of `total` answers is no more than a `weight`% share allows.

    Replica-count routing picks a replica per connection at random (kube-proxy's iptables rules,
    Swarm's DNS round robin seen by many clients), so the canary's answers over a window are a
    binomial sample: with 154 answers at 33% one standard error is 3.8 points, and a fixed
    "weight + 10 points" bound fails about once in a hundred runs of a correct release. The bound
    here is the weight plus `z` standard errors (z=4: a false alarm about once in 30,000 runs),
    which still tells a 33% canary from one that took half or two thirds of the answers.
    """
    assert total > 0, "no answers in the window"
    share = 100 * count / total
    error = 100 * (weight / 100 * (1 - weight / 100) / total) ** 0.5
    assert share <= weight + z * error, (
        f"{count} of {total} answers ({share:.1f}%) came from a {weight}% share; "
        f"the bound is {weight + z * error:.1f}% ({z} standard errors of {error:.1f} points)")
