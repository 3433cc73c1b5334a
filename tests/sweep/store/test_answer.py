"""/best's verdict from its parts, no database: vs the runner-up (Welch), the baseline (paired)."""

from __future__ import annotations

import pytest
from scipy import stats

from sweep.service.charts import verdict
from sweep.store.results import Baseline, Configuration, EvaluationRun, TrialResult, compare


def configuration(number: int, search: float, fresh: dict[int, float]) -> Configuration:
    trial = TrialResult(
        number, "COMPLETE", {"dropout": 0.3}, search, 3, {}, 1, None, None, None, None, None, {}
    )
    return Configuration(trial=trial, seed=number, fresh=fresh)


def baseline(values: dict[int, float]) -> Baseline:
    runs = [
        EvaluationRun("baseline", i, "COMPLETE", {}, seed, None, value, {}, {})
        for i, (seed, value) in enumerate(sorted(values.items()))
    ]
    return Baseline(runs)


def test_ranked_by_fresh_seeds_and_the_selection_run_left_out() -> None:
    lucky = configuration(2, 0.0930, {10: 0.112, 11: 0.120, 12: 0.118})
    assert lucky.fresh_values == [0.112, 0.120, 0.118]  # the selection run left out
    assert lucky.ranking_value == pytest.approx(0.1166667)
    assert configuration(3, 0.1, {}).ranking_value == 0.1


def test_a_clear_winner_is_decided_and_paired_with_the_baseline() -> None:
    best = configuration(15, 0.094, {10: 0.100, 11: 0.102, 12: 0.101})
    second = configuration(6, 0.095, {10: 0.120, 11: 0.123, 12: 0.121})
    base = baseline({10: 0.130, 11: 0.134, 12: 0.129, 99: 0.5})  # seed 99: no pair, left out
    answer = compare(best, second, base)
    expected = stats.ttest_ind([0.100, 0.102, 0.101], [0.120, 0.123, 0.121], equal_var=False)
    assert answer.p_value == pytest.approx(float(expected.pvalue))
    assert answer.decided
    paired = stats.ttest_rel([0.100, 0.102, 0.101], [0.130, 0.134, 0.129])
    assert answer.baseline_p_value == pytest.approx(float(paired.pvalue))
    assert verdict(answer).startswith("decided vs trial 6 (p=")


def test_overlapping_leaders_are_indistinguishable() -> None:
    # the default sweep: trial 15 vs trial 6, a few thousandths apart on noisy seeds
    best = configuration(15, 0.0942, {10: 0.1120, 11: 0.1120, 12: 0.1125})
    second = configuration(6, 0.0950, {10: 0.1080, 11: 0.1190, 12: 0.1150})
    answer = compare(best, second, None)
    assert answer.p_value is not None and answer.p_value > 0.05 and not answer.decided
    assert answer.baseline_p_value is None
    assert verdict(answer).startswith("indistinguishable from trial 6 (p=")
    one_seed = compare(best, configuration(6, 0.0950, {}), None)
    assert one_seed.p_value is None and not one_seed.decided
    assert verdict(one_seed) == "indistinguishable from trial 6"
