"""The statistics over seeds: the 95 % interval of a mean and the decision rule of a verdict,
against values computed by hand (t quantiles from a table)."""

from __future__ import annotations

import pytest

from mdgan_dist.experiments.stats import compare, estimate


def test_estimate_is_the_mean_sd_and_t_interval() -> None:
    value = estimate([7.0, 8.0, 9.0])
    assert (value.mean, value.sd, value.n) == (8.0, 1.0, 3)
    half = 4.302653 / 3**0.5  # t(0.975, 2)
    assert (value.low, value.high) == (pytest.approx(8 - half), pytest.approx(8 + half))
    single = estimate([5.0])
    assert (single.mean, single.sd, single.low, single.high) == (5.0, 0.0, None, None)


def test_welch_interval_and_verdicts() -> None:
    a, b = [6.0, 7.0, 6.5], [3.0, 3.5, 2.5]
    result = compare(a, b, higher_is_better=True)
    # Equal variances (0.25) and sizes: se = sqrt(0.25/3 * 2), df = 4, t(0.975, 4) = 2.776445.
    se = (0.25 / 3 * 2) ** 0.5
    assert result.difference == pytest.approx(3.5)
    assert (result.low, result.high) == (pytest.approx(3.5 - 2.776445 * se), pytest.approx(3.5 + 2.776445 * se))
    assert result.verdict == "holds" and result.p_value == pytest.approx(0.0010167, rel=1e-3)  # t = 8.57, 4 df
    assert compare(a, b, higher_is_better=False).verdict == "opposite"
    assert compare(b, a, higher_is_better=True).verdict == "opposite"
    assert compare([1.0, 2.0, 3.0], [1.5, 2.5, 2.0], higher_is_better=True).verdict == "tie"
    # No spread on either side: the values decide.
    assert compare([2.0, 2.0], [1.0, 1.0], higher_is_better=True).verdict == "holds"
    assert compare([2.0, 2.0], [2.0, 2.0], higher_is_better=True).verdict == "tie"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare([1.0], [1.0, 2.0], higher_is_better=True)
