"""Durations as people write them in specs and compose files: `90`, `1.5`, `500ms`, `1m30s`."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def parse_duration(value: object) -> float:
    """Return seconds for a number of seconds or a Go-style duration string.

    Raises ValueError naming the bad value, for pydantic to report with its field path.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range, as YAML reads 400 digits
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"not a duration: {value!r} (use seconds or e.g. '500ms', '30s', '1m30s')"
                ) from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not math.isfinite(seconds):
        # float() reads "nan" and "inf", and YAML has .nan and .inf: a sleep or a deadline
        # of NaN or infinity would never end or never start.
        raise ValueError(f"a duration must be a finite number of seconds, not {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A pydantic field type: seconds, accepting the duration strings `parse_duration` reads."""
