"""The statistics behind /best and /top, against values worked out by hand and by scipy."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from scipy import stats

from sweep.definition.space import trial_params
from sweep.definition.statistics import (
    RaceStep,
    decided,
    paired_p_value,
    race_step,
    summarize,
    welch_p_value,
)
from sweep.training.synthetic import SyntheticTask, true_loss
from sweep.training.tasks import RunConfig, TaskOptionsError, TrialParams


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


# ---- honest on the synthetic task: known true loss, per-seed noise of a known std ---------

NOISE = 0.02
EPOCHS = 4


def best_val_loss(params: TrialParams, seed: int) -> float:
    """One run of the synthetic task with noise: its best validation loss, as a trial reports."""
    config = RunConfig(params, EPOCHS, seed, options={"noise": NOISE})
    return min(r.val_loss for r in SyntheticTask().run(config))


def test_noise_shifts_each_seed_around_the_true_loss() -> None:
    params = trial_params({"dropout": 0.3, "weight_decay": 1e-3})
    values = [best_val_loss(params, seed) for seed in range(400)]
    assert statistics.fmean(values) == pytest.approx(true_loss(params, EPOCHS), abs=0.004)
    assert statistics.stdev(values) == pytest.approx(NOISE, rel=0.15)
    assert best_val_loss(params, 7) == best_val_loss(params, 7)  # a seed reproduces its run


def test_intervals_over_fresh_seeds_cover_the_true_loss_of_the_selected_configuration() -> None:
    """Select the best of 8 configurations by one search run each, then re-run it on 3 fresh
    seeds, 400 times: the fresh 95% interval covers its true loss in 90-99% of repetitions,
    the fresh mean is unbiased, and the selection run (and a mean including it) is biased low."""
    rng = random.Random(0)
    covered = 0
    selection_bias, fresh_bias, pooled_bias = [], [], []
    repetitions = 400
    for rep in range(repetitions):
        configs = [
            trial_params({"dropout": rng.uniform(0.3, 0.4), "weight_decay": 1e-3}) for _ in range(8)
        ]
        search = [best_val_loss(p, 1000 * rep + i) for i, p in enumerate(configs)]
        chosen = min(range(len(configs)), key=search.__getitem__)
        truth = true_loss(configs[chosen], EPOCHS)
        fresh = [best_val_loss(configs[chosen], 1000 * rep + 100 + j) for j in range(3)]
        summary = summarize(fresh)
        assert summary.ci95 is not None and summary.mean is not None
        covered += summary.ci95[0] <= truth <= summary.ci95[1]
        selection_bias.append(search[chosen] - truth)
        fresh_bias.append(summary.mean - truth)
        pooled_bias.append(statistics.fmean([search[chosen], *fresh]) - truth)
    rate = covered / repetitions
    assert 0.90 <= rate <= 0.99, rate
    # the winner of 8 draws is lucky by about 1.4 std; the fresh seeds know nothing of that
    assert statistics.fmean(selection_bias) < -NOISE
    assert abs(statistics.fmean(fresh_bias)) < 0.1 * NOISE
    assert statistics.fmean(pooled_bias) < -0.2 * NOISE
    print(
        f"coverage {rate:.3f}; bias: selection run {statistics.fmean(selection_bias):+.4f}, "
        f"fresh mean {statistics.fmean(fresh_bias):+.4f}, "
        f"mean with the selection run {statistics.fmean(pooled_bias):+.4f} (noise std {NOISE})"
    )


def test_noise_must_be_a_small_non_negative_number() -> None:
    for bad in (-0.1, "0.1", True, 11):
        with pytest.raises(TaskOptionsError, match="noise"):
            SyntheticTask().check_options({"noise": bad})
    SyntheticTask().check_options({"noise": 0})


def test_racing_drops_what_lies_above_the_leader_and_stops_when_decided_or_spent() -> None:
    leader = [0.100, 0.101, 0.102]
    close = [0.101, 0.104, 0.099]
    far = [0.200, 0.201, 0.202]
    step = race_step({1: leader, 2: close, 3: far}, race_seeds=10)
    assert step.dropped == [3] and not step.over  # 1 and 2 overlap: another round
    assert race_step({1: leader, 2: close}, race_seeds=3).over  # 3 seeds each: spent
    assert race_step({1: leader, 3: far}, race_seeds=10) == RaceStep([3], True)  # alone
    apart = [0.103, 0.104, 0.105]  # intervals overlap, yet Welch's p < 0.05
    step = race_step({1: leader, 2: apart}, race_seeds=10)
    assert step.dropped == [] and step.over
    assert race_step({}, race_seeds=10).over
