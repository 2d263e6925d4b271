"""PrometheusProvider (and `measure` on top of it) against the local stack's real Prometheus.

The queries only use Prometheus' own `prometheus` job and constant expressions, so they do
not depend on what the demo app is doing while other releases run.
"""

from __future__ import annotations

import math
import urllib.request
from datetime import UTC, datetime

import pytest

from tasks.analysis.base import ProviderError
from tasks.analysis.measurement import Phase
from tasks.analysis.prometheus import PrometheusProvider
from tasks.analysis.runner import measure
from tasks.spec import MetricSpec, Threshold

pytestmark = pytest.mark.stack

PROMETHEUS = "http://127.0.0.1:9090"
NOTHING_LISTENS = "http://127.0.0.1:1"
TWO_SERIES = (
    'label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")'
)
NO_DATA = 'up{job="no-such-job"}'


@pytest.fixture(scope="module")
def provider() -> PrometheusProvider:
    try:
        with urllib.request.urlopen(f"{PROMETHEUS}/-/ready", timeout=5) as response:
            ready = response.status == 200
    except OSError:
        ready = False
    if not ready:
        pytest.fail(f"Prometheus is not ready at {PROMETHEUS}; run `ferryman stack up`")
    return PrometheusProvider(PROMETHEUS)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def metric(query: str = "x", **threshold: float) -> MetricSpec:
    return MetricSpec(name="m", query=query, threshold=Threshold(**(threshold or {"max": 1})))


# -- PrometheusProvider.query -------------------------------------------------------------


def test_single_series_gives_its_value_as_float(provider, now):
    value = provider.query('sum(up{job="prometheus"})', now)

    assert value == 1.0 and isinstance(value, float)


def test_trailing_slash_in_url_is_tolerated(now):
    assert PrometheusProvider(PROMETHEUS + "/").query('sum(up{job="prometheus"})', now) == 1.0


@pytest.mark.parametrize("query", ["scalar(vector(3))", "3", "vector(3)"])
def test_scalar_or_one_element_vector_gives_the_float(provider, now, query):
    value = provider.query(query, now)

    assert value == 3.0 and isinstance(value, float)


def test_query_without_data_gives_none(provider, now):
    assert provider.query(NO_DATA, now) is None


def test_several_series_raise_provider_error_asking_to_aggregate(provider, now):
    with pytest.raises(ProviderError, match=r"returned 2 series; aggregate"):
        provider.query(TWO_SERIES, now)


def test_nan_result_is_returned_as_nan(provider, now):
    value = provider.query("vector(0) / vector(0)", now)

    assert value is not None and math.isnan(value)


def test_malformed_query_raises_provider_error_with_prometheus_parse_error(provider, now):
    with pytest.raises(ProviderError) as raised:
        provider.query("sum(", now)

    message = str(raised.value)
    assert message.startswith("Prometheus rejected the query: ")
    assert "parse error: unclosed left parenthesis" in message


def test_malformed_query_error_is_prometheus_text_without_a_raw_response_dump(provider, now):
    with pytest.raises(ProviderError) as raised:
        provider.query("sum(", now)

    message = str(raised.value)
    assert "b'" not in message and "HTTP Status Code" not in message
    assert message == (
        'Prometheus rejected the query: invalid parameter "query": '
        "1:5: parse error: unclosed left parenthesis"
    )


def test_unreachable_prometheus_raises_provider_error(now):
    unreachable = PrometheusProvider(NOTHING_LISTENS, timeout=5)

    with pytest.raises(ProviderError, match=r"^Prometheus at http://127\.0\.0\.1:1 unreachable"):
        unreachable.query("vector(1)", now)


# A subquery of a constant: a range vector whether or not anything was scraped yet.
@pytest.mark.parametrize("query", ['"text"', "vector(1)[10s:1s]"])
def test_result_that_is_not_a_number_raises_provider_error(provider, now, query):
    with pytest.raises(ProviderError):
        provider.query(query, now)


# -- runner.measure with the real provider ------------------------------------------------


def test_measure_with_unreachable_prometheus_is_an_error_measurement(now):
    unreachable = PrometheusProvider(NOTHING_LISTENS, timeout=5)

    m = measure(unreachable, metric(), "vector(1)", 3, now)

    assert m.phase is Phase.ERROR
    assert m.value is None
    assert "unreachable" in m.message
    assert (m.metric, m.index, m.at) == ("m", 3, now)


def test_measure_without_data_is_inconclusive(provider, now):
    m = measure(provider, metric(), NO_DATA, 0, now)

    assert m.phase is Phase.INCONCLUSIVE
    assert m.value is None and m.message == "no data"


def test_measure_of_nan_is_inconclusive(provider, now):
    m = measure(provider, metric(), "vector(0) / vector(0)", 0, now)

    assert m.phase is Phase.INCONCLUSIVE
    assert m.value is not None and math.isnan(m.value)


def test_measure_of_rejected_query_is_an_error_measurement(provider, now):
    m = measure(provider, metric(), "sum(", 0, now)

    assert m.phase is Phase.ERROR
    assert "parse error" in m.message


@pytest.mark.parametrize(
    ("query", "threshold", "phase", "message"),
    [
        ('sum(up{job="prometheus"})', {"min": 1}, Phase.SUCCESSFUL, "within threshold"),
        ("vector(3)", {"max": 1}, Phase.FAILED, "3 is above max 1"),
    ],
)
def test_measure_judges_the_real_value_against_the_threshold(
    provider, now, query, threshold, phase, message
):
    m = measure(provider, metric(**threshold), query, 0, now)

    assert m.phase is phase
    assert m.message == message
