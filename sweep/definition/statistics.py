"""How sure a sweep's answer is: means over fresh seeds, 95% intervals and t-tests.

Pure arithmetic on lists of losses, no database: the store gathers the values,
this module says what they mean. Student-t throughout, since a configuration
is re-trained on a handful of seeds, never enough for a normal approximation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

SIGNIFICANCE = 0.05  # p below this: the leader is told apart from the other


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and Student-t 95% interval of some runs' losses."""

    mean: float | None  # None without any run
    std: float | None  # None below 2 runs
    n: int
    ci95: tuple[float, float] | None  # None below 2 runs


def summarize(values: Sequence[float]) -> Summary:
    """The mean, std and 95% interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n) of ``values``."""
    n = len(values)
    if n == 0:
        return Summary(None, None, 0, None)
    mean = statistics.fmean(values)
    if n < 2:
        return Summary(mean, None, 1, None)
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, n, (mean - half, mean + half))


def _two_sided(t: float, df: float) -> float:
    return float(2.0 * stats.t.sf(abs(t), df))


def _degenerate(difference: float) -> float:
    # No spread at all: identical means are indistinguishable, different ones are certain.
    return 1.0 if difference == 0 else 0.0


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test (unequal variances) that ``a`` and ``b`` share a mean.

    None unless both have at least 2 values.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    difference = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return _degenerate(difference)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return _two_sided(difference / math.sqrt(va + vb), df)


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of the paired t-test on ``a[i] - b[i]`` (runs that share seed i).

    None unless there are at least 2 pairs.
    """
    if len(a) != len(b):
        raise ValueError("a paired test needs one value of each on every seed")
    if len(a) < 2:
        return None
    differences = [x - y for x, y in zip(a, b, strict=True)]
    mean, sd = statistics.fmean(differences), statistics.stdev(differences)
    if sd == 0:
        return _degenerate(mean)
    return _two_sided(mean / (sd / math.sqrt(len(a))), len(a) - 1)


def decided(p_value: float | None) -> bool:
    """Whether a p-value tells the two apart (below 0.05); never without one."""
    return p_value is not None and p_value < SIGNIFICANCE
