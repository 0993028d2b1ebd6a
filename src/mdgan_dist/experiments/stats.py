"""Statistics over seeds: a mean with its 95 % interval, and the decision rule behind a verdict.

The rule, fixed before any run it judges (docs/results.md): a claim "A is better than B" compares
the two configurations' per-seed values (the mean of each run's last three evaluations) with
Welch's t-test, two-sided, at the 5 % level. It *holds* when the test rejects equality and A is
the better; it is *opposite* when the test rejects equality and B is the better; it is a *tie*
otherwise. The difference A - B is reported with its 95 % Welch interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE = 1 - CONFIDENCE
DECISION_RULE = (
    "Welch's t-test on the per-seed means of the last three evaluations, two-sided, 5 % level: "
    "holds (A better, p < 0.05), opposite (B better, p < 0.05), tie (p >= 0.05)"
)


@dataclass(frozen=True)
class Estimate:
    """A mean over n runs, their standard deviation and the 95 % t-interval of the mean (None for n = 1)."""

    mean: float
    sd: float
    n: int
    low: float | None
    high: float | None


def estimate(values: Sequence[float]) -> Estimate:
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(mean, 0.0, n, None, None)
    sd = statistics.stdev(values)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    return Estimate(mean, sd, n, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """A - B: its mean, 95 % Welch interval, the test's p-value and the verdict on "A is better"."""

    difference: float
    low: float
    high: float
    p_value: float
    verdict: str  # holds | opposite | tie


def compare(a: Sequence[float], b: Sequence[float], higher_is_better: bool) -> Comparison:
    """Needs two values on each side: Welch's test has no variance to work with otherwise."""
    if min(len(a), len(b)) < 2:
        raise ValueError(f"a comparison needs at least 2 seeds on each side, got {len(a)} and {len(b)}")
    difference = statistics.fmean(a) - statistics.fmean(b)
    if statistics.pvariance(a) == statistics.pvariance(b) == 0:  # no spread: the test cannot tell, the values can
        p_value, low, high = (1.0 if difference == 0 else 0.0), difference, difference
    else:
        test = stats.ttest_ind(a, b, equal_var=False)
        interval = test.confidence_interval(CONFIDENCE)
        p_value, low, high = float(test.pvalue), float(interval.low), float(interval.high)
    better = (difference > 0) == higher_is_better
    verdict = "tie" if p_value >= SIGNIFICANCE else "holds" if better else "opposite"
    return Comparison(difference, low, high, p_value, verdict)
