"""The chart's spread band and its PNG, no database."""

from __future__ import annotations

import math

import pytest

from sweep.service.charts import Series, render_chart, spread_band
from tests.helpers import png_size


def test_the_band_is_mean_plus_minus_one_std_over_common_epochs() -> None:
    low, high, n = spread_band([[1.0, 2.0, 9.0], [3.0, 4.0]]) or ([], [], 0)
    assert n == 2 and len(low) == 2  # the shorter run (early stopping) sets the epochs
    assert low == pytest.approx([2 - math.sqrt(2), 3 - math.sqrt(2)])
    assert high == pytest.approx([2 + math.sqrt(2), 3 + math.sqrt(2)])
    assert spread_band([[1.0, 2.0]]) is None  # one run has no spread
    assert spread_band([[1.0, math.nan], [1.0, 2.0]]) is None


def test_a_chart_with_bands_is_a_png_of_the_usual_size() -> None:
    epochs = range(20)
    train = [1 / (e + 1) for e in epochs]
    val = [0.3 + 0.002 * (e - 8) ** 2 for e in epochs]
    band = spread_band([[v - 0.01 for v in val], [v + 0.01 for v in val], val])
    best = Series("best", train, val, band)
    baseline = Series("baseline", train, [v + 0.05 for v in val], band)
    assert png_size(render_chart("title", best, baseline)) == (1200, 600)
