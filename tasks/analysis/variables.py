"""The `${name}` variables of a metric query: named here for the spec's check of each query,
and given their values here for each analysis, the platform's part from its table row."""

from __future__ import annotations

from typing import Any

from tasks.platforms import platform_of

QUERY_VARIABLES = frozenset(
    {"app", "version", "previous_version", "service", "namespace", "step"}
)
"""Names a metric query may use as `${name}`."""


def query_variables(app: str, target: Any, version: str, previous_version: str | None,
                    step: str) -> dict[str, str]:
    """Every variable's value for one analysis of `version` of `app` on `target` (the
    spec's `target:` settings): `service` and `namespace` come from the platform."""
    return {
        "app": app, "version": version, "previous_version": previous_version or "",
        "step": step, **platform_of(target.kind).query_variables(target),
    }
