"""Shared fixtures. Tests marked `stack` need the local stack (`make test` brings it up)."""

from __future__ import annotations

import functools
import os

import pytest

# Before Prefect is imported anywhere: use the local stack's server, never an ephemeral one.
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def _stack_is_up(request: pytest.FixtureRequest) -> None:
    """Fail, not skip, every stack test when the stack is down: a skip would hide it in CI."""
    if not any(item.get_closest_marker("stack") for item in request.session.items):
        return
    from devstack.stack import status

    lines: list[str] = []
    if not status(say=lines.append):
        pytest.fail(
            "the local stack is not up (run `make stack-up`):\n" + "\n".join(lines),
            pytrace=False,
        )


@functools.cache
def _kubernetes_test_bed_failure() -> str | None:
    """Bring the Kubernetes test bed up beside the stack, once per session; why not, if not.

    The first time on a machine this waits for its binaries to be built (tens of minutes;
    `make test` starts that build in the background before the tests, and build.sh lets
    one build run at a time), then starts the cluster in seconds.
    """
    from devstack import stack
    from tasks.errors import StackError

    lines: list[str] = []
    try:
        stack.up(say=lines.append, kubernetes=True)
    except StackError as e:
        return f"the Kubernetes test bed did not come up: {e}\n" + "\n".join(lines)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The tests marked `kubernetes` get the test bed before any of their fixtures runs (a
    module's client fixture reads the kubeconfig the test bed writes). A hook, not a
    fixture: pytest ignores a `usefixtures` mark added after collection."""
    if item.get_closest_marker("kubernetes") and (why := _kubernetes_test_bed_failure()):
        pytest.fail(why, pytrace=False)  # every Kubernetes test, without trying again


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked `kubernetes` run on one worker as one group: tests of one app (or
    one part of the stack) run one after another on one worker (`pytest -n 4 --dist
    loadgroup`, their `xdist_group`), tests of independent apps side by side."""
    for item in items:
        if item.get_closest_marker("kubernetes"):
            item.add_marker(pytest.mark.xdist_group("kubernetes"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """In an xdist worker under `--dist loadgroup`, a test's group must have reached its id
    (`<nodeid>@<group>`, how xdist schedules a group on one worker): a pytest that ignores
    xdist's renaming would let tests of one app run side by side, failing each other."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"{len(lost)} tests lost their xdist_group (first: {lost[0]}); "
                                "pytest and pytest-xdist do not fit together here")
