"""Shared fixtures. Tests marked `stack` need the local stack (`make test` brings it up)."""

from __future__ import annotations

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
