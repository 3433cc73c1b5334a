"""The statistics behind /best and /top, against values worked out by hand and by scipy."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from sweep.definition.statistics import (
    decided,
    paired_p_value,
    summarize,
    welch_p_value,
)


def test_summary_of_three_runs_is_the_student_t_interval() -> None:
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    # t(0.975, 2) = 4.302653, s/√n = 1/√3
    half = 4.302652729749462 / math.sqrt(3)
    assert s.ci95 == pytest.approx((2.0 - half, 2.0 + half))
    assert s.ci95 == pytest.approx((-0.4841377, 4.4841377))


def test_fewer_than_two_runs_have_no_spread_and_no_interval() -> None:
    assert summarize([]).mean is None and summarize([]).ci95 is None
    one = summarize([0.25])
    assert (one.mean, one.std, one.n, one.ci95) == (0.25, None, 1, None)


def test_welch_matches_scipy_and_a_known_value() -> None:
    a, b = [1.0, 2.0, 3.0], [2.0, 3.0, 5.0]
    assert welch_p_value(a, b) == pytest.approx(0.28462717876142174)
    a, b = [0.1077, 0.1120, 0.1120, 0.1125], [0.1087, 0.1050, 0.1130]
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(a, b) == pytest.approx(float(expected))


def test_paired_matches_scipy_and_a_known_value() -> None:
    a, b = [1.0, 2.0, 3.0], [2.0, 3.0, 5.0]
    assert paired_p_value(a, b) == pytest.approx(0.05719095841793663)
    a, b = [0.110, 0.112, 0.108, 0.111], [0.117, 0.121, 0.116, 0.118]
    assert paired_p_value(a, b) == pytest.approx(float(stats.ttest_rel(a, b).pvalue))
    with pytest.raises(ValueError):
        paired_p_value([1.0, 2.0], [1.0])


def test_too_few_runs_or_no_spread() -> None:
    assert welch_p_value([1.0], [1.0, 2.0]) is None
    assert paired_p_value([1.0], [2.0]) is None
    assert welch_p_value([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert welch_p_value([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert paired_p_value([1.0, 2.0], [2.0, 3.0]) == 0.0  # always exactly 1 lower


def test_decided_below_five_percent_only() -> None:
    assert decided(0.049) and not decided(0.05) and not decided(None)
