"""The Prometheus metric provider: one instant query at one time -> a value, or why not."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Protocol

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry


class ProviderError(Exception):
    """The provider could not answer: unreachable, timed out, or the query was rejected."""


class MetricProvider(Protocol):
    """Answers one question; judging the answer is `measurement.judge`'s job."""

    def query(self, promql: str, at: datetime) -> float | None:
        """The query's single value at `at`; None when there is no data. Raises ProviderError."""
        ...


class PrometheusProvider:
    """Instant queries against Prometheus' HTTP API through prometheus-api-client."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        # No retries here: an unanswered query is an `error` measurement, and the analysis'
        # consecutive_error_limit decides how many of those are tolerated.
        self.client = PrometheusConnect(
            url=self.url, disable_ssl=False, retry=Retry(total=0), timeout=timeout
        )

    def query(self, promql: str, at: datetime) -> float | None:
        """Evaluate `promql` at `at`. A result of several series is an error: aggregate it."""
        try:
            result = self.client.custom_query(promql, params={"time": at.timestamp()})
        except PrometheusApiClientException as e:
            raise ProviderError(_rejection(str(e))) from None
        except requests.RequestException as e:
            raise ProviderError(
                f"Prometheus at {self.url} unreachable ({e.__class__.__name__})"
            ) from None
        except ValueError as e:  # a body that is not JSON: not Prometheus answering
            raise ProviderError(f"Prometheus at {self.url} sent no JSON ({e})") from None
        if not result:
            return None
        if isinstance(result[0], int | float):  # resultType scalar: [time, "value"]
            return float(result[1])
        if len(result) > 1:
            raise ProviderError(
                f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))"
            )
        return float(result[0]["value"][1])


def _rejection(message: str) -> str:
    """Prometheus' own error text from the client's exception, without the response dump."""
    start = message.find("b'{")
    if start != -1:
        try:
            body = json.loads(message[start + 2 : message.rfind("}") + 1])
            return f"Prometheus rejected the query: {body.get('error', body)}"
        except ValueError:
            pass
    return f"Prometheus rejected the query: {message[:300]}"
