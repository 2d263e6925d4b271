"""A measurement is a typed value with a phase, never an exception (Argo Rollouts' model)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tasks.spec import Threshold


class Phase(StrEnum):
    """How one measurement turned out."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # no data or NaN: not evidence either way
    ERROR = "error"  # the provider could not answer (unreachable, query rejected)


@dataclass(frozen=True)
class Measurement:
    """One metric measured once: which, when, the value (if any), the phase and why."""

    metric: str
    index: int
    at: datetime
    phase: Phase
    value: float | None = None
    message: str = ""


def judge(value: float | None, threshold: Threshold) -> tuple[Phase, str]:
    """Judge a value against a threshold range; pure, the one place bounds are compared.

    None and NaN are inconclusive: "no data" is never success.
    """
    if value is None:
        return Phase.INCONCLUSIVE, "no data"
    if math.isnan(value):
        return Phase.INCONCLUSIVE, "NaN (no samples in the window?)"
    if threshold.min is not None and value < threshold.min:
        return Phase.FAILED, f"{value:.6g} is below min {threshold.min:g}"
    if threshold.max is not None and value > threshold.max:
        return Phase.FAILED, f"{value:.6g} is above max {threshold.max:g}"
    return Phase.SUCCESSFUL, "within threshold"
