"""The decision: measurements + policy -> promote, roll back, continue or ask a person.

Pure, so every phase and limit is unit-tested without Prefect, Docker or Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from tasks.analysis.measurement import Measurement, Phase


class Verdict(StrEnum):
    """What the release should do next."""

    CONTINUE = "continue"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"  # wait for a person (on_inconclusive: pause)


@dataclass(frozen=True)
class Policy:
    """The limits of an analysis, as in Argo Rollouts (failed/inconclusive tolerated, errors)."""

    metrics: tuple[str, ...]
    count: int
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    on_inconclusive: str = "rollback"


@dataclass(frozen=True)
class Decision:
    """A verdict and the one sentence that explains it."""

    verdict: Verdict
    reason: str
    unmeasured: bool = False
    """The verdict came from the provider's errors (Prometheus unreachable, say), not from
    anything measured of the version: a restored version so judged was not verified, but
    it did not fail either."""


def _consecutive_errors(measurements: Sequence[Measurement]) -> int:
    run = 0
    for m in reversed(measurements):
        if m.phase is not Phase.ERROR:
            break
        run += 1
    return run


def decide(measurements: Iterable[Measurement], policy: Policy) -> Decision:
    """Decide from all measurements so far; called after every round of measurements.

    Limits are checked per metric, failures first. As in Argo Rollouts, an `error`
    measurement does not count toward `count`: the analysis is complete once every metric
    has `count` measurements that are not errors (consecutive_error_limit bounds how long
    that can take), and it promotes only if each metric then has at least one successful
    measurement. An analysis whose every measurement errored never passes.
    """
    by_metric: dict[str, list[Measurement]] = {name: [] for name in policy.metrics}
    for m in measurements:
        by_metric.setdefault(m.metric, []).append(m)

    for name, ms in by_metric.items():
        failed = [m for m in ms if m.phase is Phase.FAILED]
        if len(failed) > policy.failure_limit:
            return Decision(
                Verdict.ROLLBACK,
                f"{name}: {len(failed)} failed measurement(s), more than failure_limit "
                f"{policy.failure_limit} (last: {failed[-1].message})",
            )
    for name, ms in by_metric.items():
        errors = _consecutive_errors(ms)
        if errors > policy.consecutive_error_limit:
            return Decision(
                Verdict.ROLLBACK,
                f"{name}: {errors} consecutive errors, more than consecutive_error_limit "
                f"{policy.consecutive_error_limit} (last: {ms[-1].message})",
                unmeasured=True,
            )
    for name, ms in by_metric.items():
        inconclusive = [m for m in ms if m.phase is Phase.INCONCLUSIVE]
        if len(inconclusive) > policy.inconclusive_limit:
            verdict = Verdict.PAUSE if policy.on_inconclusive == "pause" else Verdict.ROLLBACK
            return Decision(
                verdict,
                f"{name}: {len(inconclusive)} inconclusive measurement(s), more than "
                f"inconclusive_limit {policy.inconclusive_limit} "
                f"(last: {inconclusive[-1].message})",
            )

    if any(len([m for m in ms if m.phase is not Phase.ERROR]) < policy.count
           for ms in by_metric.values()):
        return Decision(Verdict.CONTINUE, "analysis in progress")
    unproven = sorted(
        name for name, ms in by_metric.items() if not any(m.phase is Phase.SUCCESSFUL for m in ms)
    )
    if unproven:
        return Decision(
            Verdict.ROLLBACK,
            f"no successful measurement of {', '.join(unproven)} in {policy.count} tries",
        )
    return Decision(
        Verdict.PROMOTE,
        f"all {len(by_metric)} metric(s) within thresholds over {policy.count} "
        "measurement(s)",
    )
