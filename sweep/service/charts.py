"""The sweep's chart: training and validation loss per epoch, best configuration vs baseline.

Like the seed text's chart: the unregularized model's training loss keeps
falling while its validation loss turns up; the regularized one's stays down.
"""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from sweep.definition.evaluation import Kind
from sweep.definition.statistics import Summary
from sweep.store import results
from sweep.store.tables import Sweep

WIDTH_PX, HEIGHT_PX, DPI = 1200, 600, 100
SYMBOLS = {"dropout": "p", "dropout_1": "p₁", "dropout_2": "p₂", "weight_decay": "λ"}


@dataclass(frozen=True)
class Series:
    """One run's curves and how the legend names it."""

    label: str
    train_loss: list[float]
    val_loss: list[float]
    band: tuple[list[float], list[float], int] | None = None  # val loss mean ± 1 std, runs


def spread_band(curves: list[list[float]]) -> tuple[list[float], list[float], int] | None:
    """Per-epoch mean ± 1 sample std of validation curves, over their common epochs.

    None below 2 curves or where an epoch is not finite in every run.
    """
    if len(curves) < 2:
        return None
    epochs = min(len(c) for c in curves)
    low, high = [], []
    for e in range(epochs):
        values = [c[e] for c in curves]
        if not all(math.isfinite(v) for v in values):
            return None
        mean, std = statistics.fmean(values), statistics.stdev(values)
        low.append(mean - std)
        high.append(mean + std)
    return low, high, len(curves)


def format_params(params: dict[str, Any]) -> str:
    """``p=0.33, λ=9.1e-04``: a configuration as the chart names it."""
    parts = []
    for name, value in params.items():
        symbol = SYMBOLS.get(name, name)
        text = "0" if value == 0 else (f"{value:.1e}" if name == "weight_decay" else f"{value:.2f}")
        parts.append(f"{symbol}={text}")
    return ", ".join(parts)


def sweep_chart(conn: Connection, sweep: Sweep) -> bytes:
    """The PNG chart of the sweep's best configuration against its unregularized baseline.

    The best configuration's run on the baseline's first seed is drawn when
    re-evaluation trained one, so both start from the same weights and see the
    batches in the same order; otherwise its search run. The title gives the
    means over fresh seeds with their 95% intervals, and whether the best is
    told apart from the runner-up. NoResultYet before any trial has completed.
    """
    runs = results.evaluation_runs(conn, sweep, curves=True)
    answer = results.best_answer(conn, sweep, runs)
    best = answer.best
    baseline = answer.baseline.runs[0] if answer.baseline is not None else None
    curves = results.trial_result(conn, sweep, best.trial.number).curves
    seed = best.seed
    if baseline is not None:
        for run in runs:
            same = run.trial_number == best.trial.number and run.seed == baseline.seed
            if run.kind == Kind.REEVALUATION and run.state == "COMPLETE" and same:
                curves, seed = run.curves, run.seed
    done = [r for r in runs if r.state == "COMPLETE"]
    best_runs = [
        r.curves.get("val_loss", [])
        for r in done
        if r.kind == Kind.REEVALUATION and r.trial_number == best.trial.number
    ]
    best_series = Series(
        f"best: {format_params(best.trial.params)} (seed {seed})",
        curves.get("train_loss", []),
        curves.get("val_loss", []),
        spread_band(best_runs),
    )
    baseline_series = None
    if baseline is not None:
        baseline_runs = [r.curves.get("val_loss", []) for r in done if r.kind == Kind.BASELINE]
        baseline_series = Series(
            f"baseline: {format_params(baseline.params)} (seed {baseline.seed})",
            baseline.curves.get("train_loss", []),
            baseline.curves.get("val_loss", []),
            spread_band(baseline_runs),
        )
    title = (
        f"{sweep.name} · {sweep.task}: best {format_params(best.trial.params)} vs "
        f"no regularization\nbest val loss {_estimate(best)}"
    )
    if answer.runner_up is not None:
        title += " · " + verdict(answer)
    if answer.baseline is not None:
        title += f"\nbaseline: {_mean_text(answer.baseline.summary)}"  # a line of its own: fits
    elif sweep.baseline:
        title += "\nbaseline not trained yet"
    return render_chart(title, best_series, baseline_series)


def _mean_text(summary: Summary) -> str:
    text = f"{summary.mean:.4f}"
    if summary.ci95 is not None:
        low, high = summary.ci95
        text += f" (95% CI {low:.4f}–{high:.4f}, {summary.n} seeds)"
    return text


def _estimate(best: results.Configuration) -> str:
    """The fresh-seed mean and interval once re-evaluated, else the one search run."""
    if best.fresh:
        return "over fresh seeds: " + _mean_text(best.fresh_summary)
    return f"(search run, one seed): {best.selection_value:.4f}"


def verdict(answer: results.Answer) -> str:
    """``decided vs trial 6 (p=0.012)`` or ``indistinguishable from trial 6 (p=0.41)``."""
    assert answer.runner_up is not None
    other = answer.runner_up.trial.number
    p = "" if answer.p_value is None else f" (p={answer.p_value:.2g})"
    if answer.decided:
        return f"decided vs trial {other}{p}"
    return f"indistinguishable from trial {other}{p}"


# Over 60 lines on purpose: one figure drawn top to bottom reads better than helpers
# passing matplotlib axes around.
def render_chart(title: str, best: Series, baseline: Series | None) -> bytes:
    """A PNG (1200 x 600 px) of training (dashed) and validation (solid) loss per epoch.

    Left: both losses on a log scale, where the widening gap between training
    and validation loss shows overfitting. Right: validation loss alone, close up,
    where the baseline's turning up and the best configuration's lower minimum show.
    A series with a band gets its validation loss's mean ± 1 std over fresh
    seeds shaded behind its one run.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    both, close_up = figure.subplots(1, 2, width_ratios=(3, 2))
    drawn = [(s, c) for s, c in ((baseline, "tab:red"), (best, "tab:blue")) if s is not None]
    lows, highs = [], []
    for series, color in drawn:
        epochs = list(range(len(series.val_loss)))  # from 0, as the API counts them
        both.plot(
            epochs,
            series.train_loss,
            color=color,
            linestyle="--",
            linewidth=1.5,
            label=f"training loss, {series.label}",
        )
        for axes in (both, close_up):
            axes.plot(
                epochs,
                series.val_loss,
                color=color,
                linewidth=2,
                label=f"validation loss, {series.label}",
            )
        if series.band is not None:
            low, high, n = series.band
            for axes in (both, close_up):
                axes.fill_between(
                    list(range(len(low))),
                    low,
                    high,
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                    label=f"validation loss ±1 std over {n} fresh seeds" if axes is both else None,
                )
        finite = [(v, e) for e, v in zip(epochs, series.val_loss, strict=False) if math.isfinite(v)]
        if finite:
            value, epoch = min(finite)
            close_up.plot(
                [epoch],
                [value],
                marker="o",
                color=color,
                markersize=8,
                markeredgecolor="white",
                zorder=5,
            )
            close_up.annotate(
                f"{value:.4f}",
                (epoch, value),
                textcoords="offset points",
                xytext=(0, -16),
                ha="center",
                color=color,
                fontsize=9,
                zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
            )
            lows.append(value)
            late = [v for v, e in finite if e > len(epochs) // 4]
            highs.append(max(late or [value]))
    both.set_yscale("log")
    both.set_xlabel("epoch")
    both.set_ylabel("cross-entropy loss (log scale)")
    both.set_title("training and validation loss", fontsize=10)
    both.grid(True, which="both", alpha=0.3)
    both.legend(loc="lower left", fontsize=8)
    close_up.set_xlabel("epoch")
    close_up.set_ylabel("validation loss")
    close_up.set_title("validation loss, close up (dot: best epoch)", fontsize=10)
    close_up.grid(True, alpha=0.3)
    if lows:
        span = max(highs) - min(lows)
        close_up.set_ylim(min(lows) - 0.15 * span, max(highs) + 0.1 * span)
    figure.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
