"""The pure decision function over every phase and limit."""

from datetime import UTC, datetime

import pytest

from tasks.analysis.decision import Policy, Verdict, decide
from tasks.analysis.measurement import Measurement, Phase

S, F, I, E = Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR
AT = datetime(2026, 1, 1, tzinfo=UTC)


def series(metric: str, *phases: Phase) -> list[Measurement]:
    return [Measurement(metric, i, AT, p, None, f"{p.value} #{i}") for i, p in enumerate(phases)]


def policy(**kw) -> Policy:
    return Policy(**{"metrics": ("errors",), "count": 3, **kw})


def test_promotes_when_every_measurement_succeeds():
    d = decide(series("errors", S, S, S), policy())
    assert d.verdict is Verdict.PROMOTE


def test_continues_until_count_is_reached():
    assert decide(series("errors", S, S), policy()).verdict is Verdict.CONTINUE
    assert decide([], policy()).verdict is Verdict.CONTINUE


def test_rolls_back_on_first_failure_with_default_failure_limit():
    d = decide(series("errors", S, F), policy())
    assert d.verdict is Verdict.ROLLBACK
    assert "failure_limit 0" in d.reason and "failed #1" in d.reason


def test_tolerates_failures_up_to_failure_limit():
    assert decide(series("errors", F, S, S), policy(failure_limit=1)).verdict is Verdict.PROMOTE
    assert decide(series("errors", F, F), policy(failure_limit=1)).verdict is Verdict.ROLLBACK


def test_rolls_back_when_inconclusive_exceeds_limit():
    d = decide(series("errors", I), policy())
    assert d.verdict is Verdict.ROLLBACK and "inconclusive_limit 0" in d.reason


def test_pauses_on_inconclusive_when_policy_says_pause():
    d = decide(series("errors", I), policy(on_inconclusive="pause"))
    assert d.verdict is Verdict.PAUSE


def test_tolerates_inconclusive_up_to_limit():
    d = decide(series("errors", I, S, S), policy(inconclusive_limit=1))
    assert d.verdict is Verdict.PROMOTE


def test_never_promotes_when_all_measurements_are_inconclusive_within_limit():
    d = decide(series("errors", I, I, I), policy(inconclusive_limit=3))
    assert d.verdict is Verdict.ROLLBACK
    assert "no successful measurement of errors" in d.reason


def test_errors_under_the_consecutive_limit_continue():
    assert decide(series("errors", E, E), policy(count=5)).verdict is Verdict.CONTINUE


def test_rolls_back_past_consecutive_error_limit():
    d = decide(series("errors", E, E, E, E, E), policy(count=10))
    assert d.verdict is Verdict.ROLLBACK and "consecutive_error_limit 4" in d.reason


def test_a_success_resets_the_consecutive_error_run():
    phases = (E, E, E, E, S, E, E, E, E, S)
    assert decide(series("errors", *phases), policy(count=2)).verdict is Verdict.PROMOTE


def test_errors_do_not_count_toward_count():
    # As in Argo Rollouts: four errors and one success are one measurement, not five.
    d = decide(series("errors", E, E, E, E, S), policy(count=5))
    assert d.verdict is Verdict.CONTINUE
    d = decide(series("errors", E, E, E, E, S, S, S, S, S), policy(count=5))
    assert d.verdict is Verdict.PROMOTE


def test_an_analysis_where_every_measurement_errored_is_not_successful():
    # argo-rollouts #4479: errors must never add up to a pass, however many there are.
    assert decide(series("errors", E, E, E, E), policy(count=3)).verdict is Verdict.CONTINUE
    d = decide(series("errors", E, E, E, E, E), policy(count=3))
    assert d.verdict is Verdict.ROLLBACK and "consecutive errors" in d.reason
    assert d.unmeasured


def test_a_verdict_from_measurements_is_not_unmeasured():
    assert not decide(series("errors", S, F), policy()).unmeasured


def test_zero_consecutive_error_limit_rolls_back_on_first_error():
    d = decide(series("errors", E), policy(consecutive_error_limit=0))
    assert d.verdict is Verdict.ROLLBACK


def test_each_metric_needs_a_success_of_its_own():
    ms = series("errors", S, S, S) + series("latency", I, I, I)
    d = decide(ms, policy(metrics=("errors", "latency"), inconclusive_limit=5))
    assert d.verdict is Verdict.ROLLBACK and "latency" in d.reason


def test_waits_for_every_metric_to_reach_count():
    ms = series("errors", S, S, S) + series("latency", S, S)
    assert decide(ms, policy(metrics=("errors", "latency"))).verdict is Verdict.CONTINUE


def test_limits_are_counted_per_metric():
    ms = series("errors", F, S, S) + series("latency", F, S, S)
    d = decide(ms, policy(metrics=("errors", "latency"), failure_limit=1))
    assert d.verdict is Verdict.PROMOTE


@pytest.mark.parametrize(
    "phases, verdict",
    [((F, I), Verdict.ROLLBACK), ((I, F), Verdict.ROLLBACK)],
)
def test_failure_is_reported_before_inconclusive(phases, verdict):
    d = decide(series("errors", *phases), policy(on_inconclusive="pause"))
    assert d.verdict is verdict and "failed" in d.reason
