"""The default pruner on the default task: a slow learner that wins late is not pruned.

On this task regularized models are behind for the first epochs and ahead at the
end, while the unregularized ones learn fast and then overfit. A pruner that
judges early prunes every trial after its start-up trials, so "the best" is the
best of the start-up trials (DESIGN.md, "Pruning can hide the answer").
"""

from __future__ import annotations

import optuna
import pytest
from optuna.pruners import BasePruner
from optuna.trial import TrialState

from sweep.definition.search import make_pruner
from sweep.definition.spec import DEFAULT_EPOCHS, DEFAULT_TASK
from sweep.training.tasks import RunConfig, TrialParams, get_task

STARTUP_TRIALS = 5  # the median and percentile pruners' n_startup_trials

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def val_curve(dropout: float, weight_decay: float, seed: int) -> list[float]:
    config = RunConfig(TrialParams(dropout, dropout, weight_decay), DEFAULT_EPOCHS, seed)
    return [r.val_loss for r in get_task(DEFAULT_TASK).run(config)]


@pytest.fixture(scope="module")
def curves() -> tuple[list[float], list[float]]:
    """The unregularized model's validation curve, and a regularized one's on another seed."""
    return val_curve(0.0, 0.0, seed=0), val_curve(0.35, 1e-3, seed=1)


def survives(pruner: BasePruner, startup: list[float], candidate: list[float]) -> bool:
    """Whether ``candidate`` runs to the end after start-up trials that reported ``startup``."""
    study = optuna.create_study(pruner=pruner)
    for _ in range(STARTUP_TRIALS):
        study.add_trial(
            optuna.trial.create_trial(
                value=min(startup), intermediate_values=dict(enumerate(startup))
            )
        )
    trial = study.ask()
    for step, value in enumerate(candidate):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return False
    study.tell(trial, min(candidate))
    return True


def test_a_late_winner_after_the_startup_trials_is_not_pruned(
    curves: tuple[list[float], list[float]],
) -> None:
    unregularized, regularized = curves
    # the premise: behind early, best at the end
    assert regularized[5] > unregularized[5]
    assert min(regularized) < min(unregularized)

    for name in ("median", "percentile"):
        assert survives(make_pruner(name, DEFAULT_EPOCHS), unregularized, regularized), name
    # what the default replaces: a fixed 5-epoch warm-up prunes the eventual best
    short = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=5)
    assert not survives(short, unregularized, regularized)
