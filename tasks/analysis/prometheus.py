"""The Prometheus metric provider: one instant query at one time -> a value, or why not; and
its `analysis.provider` settings."""

from __future__ import annotations

import ast
import json
from datetime import datetime
from typing import Annotated, Literal

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from pydantic import Field
from urllib3.util.retry import Retry

from tasks.analysis.base import ProviderError
from tasks.durations import Seconds
from tasks.fields import SpecModel


class PrometheusSpec(SpecModel):
    """`analysis.provider` of kind `prometheus`: instant queries against its HTTP API."""

    kind: Literal["prometheus"] = "prometheus"
    address: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:9090"
    """Prometheus' address."""
    query_timeout: Annotated[Seconds, Field(gt=0)] = 10.0
    """Time-out of one query."""


class PrometheusProvider:
    """Instant queries against Prometheus' HTTP API through prometheus-api-client."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        # No retries here: an unanswered query is an `error` measurement, and the analysis'
        # consecutive_error_limit decides how many of those are tolerated.
        self.client = PrometheusConnect(
            url=self.url, disable_ssl=False, retry=Retry(total=0), timeout=timeout
        )

    @classmethod
    def of(cls, settings: PrometheusSpec) -> PrometheusProvider:
        return cls(settings.address, settings.query_timeout)

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
        return _single_value(result)


def _single_value(result: list) -> float | None:
    """The one number in an instant query's result: a scalar or a one-series vector."""
    if not result:
        return None
    if len(result) == 2 and isinstance(result[0], int | float):  # scalar: [time, "value"]
        return _number(result[1])
    if not all(isinstance(r, dict) for r in result):
        raise ProviderError(f"query returned neither a scalar nor a vector: {result!r:.200}")
    if len(result) > 1:
        raise ProviderError(
            f"query returned {len(result)} series; aggregate it to one (e.g. sum(...))"
        )
    if "value" not in result[0]:  # a range vector: `values`
        raise ProviderError("query returned a range vector; use an instant vector (e.g. rate())")
    return _number(result[0]["value"][1])


def _number(text: object) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise ProviderError(f"query returned {text!r:.100}, not a number") from None


def _rejection(message: str) -> str:
    """Prometheus' own error text from the client's exception, without the response dump.

    The client puts `repr(response.content)` in its message; undo the repr, then the JSON.
    """
    start = message.find("b'")
    if start != -1:
        try:
            body = json.loads(ast.literal_eval(message[start : message.rfind("'") + 1]))
            return f"Prometheus rejected the query: {body.get('error', body)}"
        except (ValueError, SyntaxError, AttributeError):
            pass
    return f"Prometheus rejected the query: {message[:300]}"
