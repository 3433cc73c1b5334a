"""Pruning from the worker's cached view decides as Optuna's pruner on the store does.

Recorded curves are replayed two trials at a time (so the view sees running trials
gain epochs and finish): each epoch is reported to the store as bare Optuna does,
then decided twice, by ``Trial.should_prune()`` on the store and by the worker's
``PruningView`` refreshed before every decision. The decisions must be identical.

With a view up to ``max_age`` old (the flush interval) decisions may differ: the
view can miss trials that finished, or epochs reported, within ``max_age`` plus
the other workers' flush interval before the decision (sweep.scheduler.pruning).
"""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.orm import Session, sessionmaker

from sweep.definition.search import make_pruner
from sweep.scheduler.pruning import PruningView
from sweep.store.optuna_compat import trial_id

EPOCHS = 8


def _recorded_curves(n: int) -> list[list[float]]:
    """Validation curves as the default task draws them: a fast or slow fall to a floor."""
    rng = random.Random(7)
    curves = []
    for _ in range(n):
        floor, scale, rate = rng.uniform(0.1, 0.6), rng.uniform(0.5, 2.0), rng.uniform(0.1, 0.6)
        curves.append([floor + scale / (1 + rate * step) for step in range(EPOCHS)])
    return curves


# median reads the finished trials' curves; hyperband its brackets and the rungs that
# successive halving records on every trial
@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_the_cached_view_decides_as_optunas_pruner_on_the_store(
    db_url: str, factory: sessionmaker[Session], pruner: str
) -> None:
    store_pruner = make_pruner(pruner, EPOCHS, {})
    study = optuna.create_study(storage=db_url, study_name="replay", pruner=store_pruner)
    view = PruningView(factory, "replay", make_pruner(pruner, EPOCHS, {}), max_age=0.0)
    store_decisions, view_decisions = [], []
    curves = _recorded_curves(10)
    for first in range(0, len(curves), 2):
        running = {study.ask(): curves[i] for i in range(first, min(first + 2, len(curves)))}
        for step in range(EPOCHS):
            for trial, curve in list(running.items()):
                trial.report(curve[step], step)
                on_store = trial.should_prune()
                cached = view.should_prune(trial_id(trial), step, curve[step])
                store_decisions.append(on_store)
                view_decisions.append(cached)
                if on_store:
                    study.tell(trial, state=TrialState.PRUNED)
                    del running[trial]
        for trial, curve in running.items():
            study.tell(trial, min(curve))
    assert view_decisions == store_decisions
    assert any(store_decisions), "the replay should prune some trials"
