"""The analysis loop: measure every metric every `interval`, `count` times, deciding each round."""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks.analysis.base import MetricProvider, ProviderError
from tasks.analysis.decision import Decision, Policy, Verdict, decide
from tasks.analysis.measurement import Measurement, Phase, judge
from tasks.spec import AnalysisSpec, MetricSpec


@dataclass(frozen=True)
class AnalysisResult:
    """The decision and every measurement that led to it, in the order they were taken."""

    decision: Decision
    measurements: tuple[Measurement, ...]


def policy_of(analysis: AnalysisSpec) -> Policy:
    """The decision policy an analysis spec describes."""
    return Policy(
        metrics=tuple(m.name for m in analysis.metrics),
        count=analysis.count,
        failure_limit=analysis.failure_limit,
        inconclusive_limit=analysis.inconclusive_limit,
        consecutive_error_limit=analysis.consecutive_error_limit,
        on_inconclusive=analysis.on_inconclusive,
    )


def render_query(metric: MetricSpec, variables: dict[str, str]) -> str:
    """Fill a metric's `${...}` placeholders with `variables` (tasks/analysis/variables.py:
    the spec checked their names)."""
    return string.Template(metric.query).substitute(variables)


def measure(
    provider: MetricProvider, metric: MetricSpec, promql: str, index: int, at: datetime
) -> Measurement:
    """Take one measurement; a provider failure becomes an `error` measurement, not a raise."""
    try:
        value = provider.query(promql, at)
    except ProviderError as e:
        return Measurement(metric.name, index, at, Phase.ERROR, None, str(e))
    phase, message = judge(value, metric.threshold)
    return Measurement(metric.name, index, at, phase, value, message)


Watch = Callable[[], Decision | None]
"""Called between rounds (and while waiting for one): a decision to stop with, e.g. when the
rolling update the analysis runs beside has failed; None to go on."""
WATCH_EVERY = 1.0


def run_analysis(
    analysis: AnalysisSpec,
    variables: dict[str, str],
    provider: MetricProvider,
    on_measurement: Callable[[Measurement], None] = lambda m: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    watch: Watch | None = None,
) -> AnalysisResult:
    """Run the analysis until a verdict other than CONTINUE; called by the verify task.

    Rounds are scheduled from the start (initial_delay + i * interval), so slow queries do
    not stretch the analysis. Rounds go on past `count` while errors leave a metric short
    of `count` real measurements (see `decide`). Returns PROMOTE, ROLLBACK or PAUSE, never
    CONTINUE.
    """
    policy = policy_of(analysis)
    queries = {m.name: render_query(m, variables) for m in analysis.metrics}
    measurements: list[Measurement] = []
    start = clock()

    def wait_until(deadline: float) -> Decision | None:
        while True:
            stop = watch() if watch is not None else None
            left = deadline - clock()
            if stop is not None or left <= 0:
                return stop
            sleep(min(left, WATCH_EVERY) if watch is not None else left)

    index = 0
    while True:
        stop = wait_until(start + analysis.initial_delay + index * analysis.interval)
        if stop is not None:
            return AnalysisResult(stop, tuple(measurements))
        at = now()
        for metric in analysis.metrics:
            m = measure(provider, metric, queries[metric.name], index, at)
            measurements.append(m)
            on_measurement(m)
        decision = decide(measurements, policy)
        if decision.verdict is not Verdict.CONTINUE:
            return AnalysisResult(decision, tuple(measurements))
        index += 1
