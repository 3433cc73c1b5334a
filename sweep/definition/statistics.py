"""How sure a sweep's answer is: means over fresh seeds, 95% intervals and t-tests.

Pure arithmetic on lists of losses, no database: the store gathers the values,
this module says what they mean. Student-t throughout, since a configuration
is re-trained on a handful of seeds, never enough for a normal approximation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
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


@dataclass(frozen=True)
class RaceStep:
    """What one round of racing decides: who drops out, and whether the race is over."""

    dropped: list[int]  # configuration numbers whose 95% interval lies wholly above the leader's
    over: bool  # the leader is decided, alone, or the seeds are spent


def race_step(fresh: Mapping[int, Sequence[float]], race_seeds: int) -> RaceStep:
    """One round of racing over the configurations still in it (number -> fresh values).

    The leader has the lowest fresh mean. A configuration drops out when its
    95% interval lies wholly above the leader's. The race is over when one
    configuration is left, the leader is decided against the runner-up among
    those left (Welch, p < 0.05), or every one left has ``race_seeds`` seeds.
    """
    summaries = {n: summarize(v) for n, v in fresh.items() if v}
    if not summaries:
        return RaceStep([], True)
    leader = min(summaries, key=lambda n: (summaries[n].mean or 0.0, n))
    top = summaries[leader].ci95
    dropped = sorted(
        n
        for n, s in summaries.items()
        if n != leader and top is not None and s.ci95 is not None and s.ci95[0] > top[1]
    )
    left = [n for n in summaries if n not in dropped]
    if len(left) < 2:
        return RaceStep(dropped, True)
    runner_up = min((n for n in left if n != leader), key=lambda n: (summaries[n].mean or 0.0, n))
    told_apart = decided(welch_p_value(fresh[leader], fresh[runner_up]))
    spent = all(len(fresh[n]) >= race_seeds for n in left)
    return RaceStep(dropped, told_apart or spent)
