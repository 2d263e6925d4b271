"""In-memory stand-ins for time and Prometheus, for driving every strategy in-process (the
platforms' own stand-ins are their fake APIs, tests/platforms/*/fake_api.py, and the toy
platform of tests/platforms/toy/)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from tasks.analysis.base import ProviderError
from tasks.steps import Clock


class FakeClock:
    """Monotonic time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def clock(self) -> Clock:
        return Clock(sleep=self.sleep, monotonic=lambda: self.t,
                     now=lambda: datetime.fromtimestamp(1_800_000_000 + self.t, UTC))


Answer = Callable[[str, int], float | None | Exception]
"""(version, how many times that version was asked before) -> a value, no data or an error."""


class ScriptedPrometheus:
    """Answers each query by the version it names: good versions 0.0, scripted others."""

    def __init__(self, script: dict[str, Answer] | None = None) -> None:
        self.script = script or {}
        self.asked: dict[str, int] = {}

    def query(self, promql: str, at: datetime) -> float | None:
        version = re.search(r'version="([^"]+)"', promql).group(1)
        n = self.asked.get(version, 0)
        self.asked[version] = n + 1
        answer = self.script.get(version, lambda v, i: 0.0)(version, n)
        if isinstance(answer, Exception):
            raise answer
        return answer


def always(value) -> Answer:
    return lambda version, n: value


def after(good: int, then) -> Answer:
    """`good` good answers, then `then` for ever."""
    return lambda version, n: 0.0 if n < good else then


DOWN = ProviderError("Prometheus at http://127.0.0.1:9090 unreachable (ConnectionError)")
