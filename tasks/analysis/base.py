"""The metric provider seam (Argo Rollouts' `metric.Provider`, Flagger's `RunQuery`): one
question, run this query at this time and give a value, no data, or why not. Judging the value
is `tasks.analysis.measurement`'s job. Each provider is a module of tasks/analysis/ with its
spec model, and a row of `tasks/analysis/providers.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ProviderError(Exception):
    """The provider could not answer: unreachable, timed out, or the query was rejected."""


class MetricProvider(Protocol):
    """Answers one question; judging the answer is `measurement.judge`'s job."""

    def query(self, promql: str, at: datetime) -> float | None:
        """The query's single value at `at`; None when there is no data. Raises ProviderError."""
        ...
