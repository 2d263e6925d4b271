"""Judging one value against a threshold range."""

import math

import pytest

from tasks.analysis.measurement import Phase, judge
from tasks.spec import Threshold


@pytest.mark.parametrize(
    "value, threshold, phase",
    [
        (0.01, Threshold(max=0.05), Phase.SUCCESSFUL),
        (0.05, Threshold(max=0.05), Phase.SUCCESSFUL),
        (0.06, Threshold(max=0.05), Phase.FAILED),
        (0.9, Threshold(min=0.95), Phase.FAILED),
        (0.99, Threshold(min=0.95), Phase.SUCCESSFUL),
        (5, Threshold(min=1, max=10), Phase.SUCCESSFUL),
        (11, Threshold(min=1, max=10), Phase.FAILED),
        (math.inf, Threshold(max=1), Phase.FAILED),
        (None, Threshold(max=1), Phase.INCONCLUSIVE),
        (math.nan, Threshold(max=1), Phase.INCONCLUSIVE),
    ],
)
def test_judges_value_against_range(value, threshold, phase):
    assert judge(value, threshold)[0] is phase


def test_failed_judgement_says_which_bound():
    assert "above max 0.05" in judge(0.2, Threshold(max=0.05))[1]
    assert "below min 1" in judge(0.2, Threshold(min=1))[1]
