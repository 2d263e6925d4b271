"""The `roll back` task as Prefect runs it (its run name is computed from its parameters):
a first install that failed has no version to go back to, and its roll back must still run."""

from __future__ import annotations

import pytest

from tasks.strategies import restore
from tasks.targets import Version

pytestmark = pytest.mark.stack  # the stack's Prefect server records the task run


@pytest.mark.parametrize(("to", "name"), [
    (None, "roll back: remove the new version"),
    (Version("1.2.3", "127.0.0.1:5000/x:1.2.3"), "roll back to 1.2.3"),
])
def test_roll_back_runs_and_is_named_with_or_without_an_earlier_version(monkeypatch, to, name):
    from prefect import flow
    from prefect.context import TaskRunContext

    seen = []

    def put_back(target, router, version):
        seen.append((version, TaskRunContext.get().task_run.name))

    monkeypatch.setattr(restore, "put_back", put_back)

    @flow
    def rolls_back():
        restore.roll_back(object(), object(), to)

    rolls_back()
    assert seen == [(to, name)]
