"""The sweep's chart: training and validation loss per epoch, best configuration vs baseline.

Like the seed text's chart: the unregularized model's training loss keeps
falling while its validation loss turns up; the regularized one's stays down.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from sweep.definition.evaluation import Kind
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

    The best configuration's run on the baseline's seed is drawn when
    re-evaluation trained one, so both start from the same weights and see the
    batches in the same order; otherwise its search run. NoResultYet before any
    trial has completed.
    """
    best = results.best_configuration(conn, sweep)
    runs = results.evaluation_runs(conn, sweep, curves=True)
    baseline = results.finished_run(runs, Kind.BASELINE)
    curves = results.trial_result(conn, sweep, best.trial.number).curves
    seed = best.seed
    if baseline is not None:
        for run in runs:
            same = run.trial_number == best.trial.number and run.seed == baseline.seed
            if run.kind == Kind.REEVALUATION and run.state == "COMPLETE" and same:
                curves, seed = run.curves, run.seed
    spread = f" ± {best.std:.4f}" if best.std is not None else ""
    best_series = Series(
        f"best: {format_params(best.trial.params)} (seed {seed})",
        curves.get("train_loss", []),
        curves.get("val_loss", []),
    )
    baseline_series = None
    if baseline is not None:
        baseline_series = Series(
            f"baseline: {format_params(baseline.params)} (seed {baseline.seed})",
            baseline.curves.get("train_loss", []),
            baseline.curves.get("val_loss", []),
        )
    title = (
        f"{sweep.name} · {sweep.task}: best {format_params(best.trial.params)} vs "
        f"no regularization\nbest val loss, mean over {best.seeds} seed(s): "
        f"{best.mean:.4f}{spread}"
    )
    if baseline is not None and baseline.value is not None:
        title += f" · baseline: {baseline.value:.4f}"
    elif sweep.baseline:
        title += " · baseline not trained yet"
    return render_chart(title, best_series, baseline_series)


# Over 60 lines on purpose: one figure drawn top to bottom reads better than helpers
# passing matplotlib axes around.
def render_chart(title: str, best: Series, baseline: Series | None) -> bytes:
    """A PNG (1200 x 600 px) of training (dashed) and validation (solid) loss per epoch.

    Left: both losses on a log scale, where the widening gap between training
    and validation loss shows overfitting. Right: validation loss alone, close up,
    where the baseline's turning up and the best configuration's lower minimum show.
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
