"""The analysis loop with a scripted provider and a fake clock."""

from datetime import UTC, datetime

from tasks.analysis.base import ProviderError
from tasks.analysis.decision import Verdict
from tasks.analysis.measurement import Phase
from tasks.analysis.runner import render_query, run_analysis
from tasks.spec import AnalysisSpec

VARS = {"app": "demo", "version": "1.2.0", "previous_version": "1.1.0", "service": "demo",
        "namespace": "", "step": ""}


class Scripted:
    """Answers queries from a list: a float, None (no data) or an exception."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.queries = []

    def query(self, promql, at):
        self.queries.append((promql, at))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self):
        self.t = 0.0
        self.slept = []

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.t += seconds


def spec(**kw) -> AnalysisSpec:
    base = {
        "interval": 5, "count": 3, "initial_delay": 10,
        "metrics": [{"name": "errors", "query": 'rate(x{version="${version}"}[1m])',
                     "threshold": {"max": 0.05}}],
    }
    return AnalysisSpec.model_validate(base | kw)


def run(answers, **kw):
    clock = Clock()
    provider = Scripted(answers)
    result = run_analysis(
        spec(**kw), VARS, provider, sleep=clock.sleep, clock=clock,
        now=lambda: datetime.fromtimestamp(clock.t, UTC),
    )
    return result, provider, clock


def test_promotes_after_count_good_measurements_on_schedule():
    result, provider, clock = run([0.0, 0.01, 0.02])
    assert result.decision.verdict is Verdict.PROMOTE
    assert [m.value for m in result.measurements] == [0.0, 0.01, 0.02]
    assert clock.slept == [10, 5, 5]


def test_query_is_rendered_with_the_release_variables():
    _, provider, _ = run([0.0, 0.0, 0.0])
    assert provider.queries[0][0] == 'rate(x{version="1.2.0"}[1m])'


def test_stops_at_the_first_failing_measurement():
    result, provider, _ = run([0.0, 0.5, 0.0])
    assert result.decision.verdict is Verdict.ROLLBACK
    assert len(result.measurements) == 2 and len(provider.answers) == 1


def test_provider_errors_become_error_measurements_and_add_a_round():
    result, _, clock = run([ProviderError("Prometheus unreachable"), 0.0, 0.0, 0.0])
    first = result.measurements[0]
    assert first.phase is Phase.ERROR and "unreachable" in first.message
    assert len(result.measurements) == 4 and clock.slept == [10, 5, 5, 5]
    assert result.decision.verdict is Verdict.PROMOTE


def test_prometheus_down_for_the_whole_analysis_rolls_back_unmeasured():
    result, provider, _ = run([ProviderError("down")] * 5)
    assert result.decision.verdict is Verdict.ROLLBACK and result.decision.unmeasured
    assert provider.answers == []


def test_watch_stops_the_analysis_between_rounds():
    from tasks.analysis.decision import Decision

    clock = Clock()
    looks = []

    def watch():
        looks.append(clock.t)
        return Decision(Verdict.ROLLBACK, "deploy failed") if clock.t >= 12 else None

    result = run_analysis(spec(), VARS, Scripted([0.0, 0.0, 0.0]), sleep=clock.sleep,
                          clock=clock, now=lambda: datetime.fromtimestamp(clock.t, UTC),
                          watch=watch)
    assert result.decision.reason == "deploy failed"
    # Watched every second while waiting, not only at the rounds (10 s, 15 s).
    assert len(result.measurements) == 1 and looks[:3] == [0, 1, 2] and clock.t == 12


def test_no_data_is_inconclusive_and_rolls_back_by_default():
    result, _, _ = run([None, 0.0, 0.0])
    assert result.measurements[0].phase is Phase.INCONCLUSIVE
    assert result.decision.verdict is Verdict.ROLLBACK


def test_slow_queries_do_not_stretch_the_schedule():
    clock = Clock()

    class Slow(Scripted):
        def query(self, promql, at):
            clock.t += 2  # each query takes 2 s
            return super().query(promql, at)

    run_analysis(spec(), VARS, Slow([0.0] * 3), sleep=clock.sleep, clock=clock,
                 now=lambda: datetime.fromtimestamp(clock.t, UTC))
    assert clock.slept == [10, 3, 3]


def test_render_query_leaves_promql_braces_alone():
    metric = spec().metrics[0]
    assert render_query(metric, VARS).count("{") == 1
