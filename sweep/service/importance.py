"""Which regularizer mattered: parameter importances over a sweep's completed trials."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from sqlalchemy import Connection

from sweep.definition.space import Space
from sweep.errors import NotEnoughTrials
from sweep.store import queries
from sweep.store.results import study_id_of
from sweep.store.tables import Sweep

MIN_TRIALS = 5


@dataclass(frozen=True)
class Importances:
    """Each parameter's share of the variation in validation loss, largest first (sum 1)."""

    importances: dict[str, float]
    trials: int


def param_importances(conn: Connection, sweep: Sweep) -> Importances:
    """fANOVA importances over the sweep's COMPLETE trials; NotEnoughTrials below MIN_TRIALS.

    Trials that reused another's result are left out: a repeated point would
    count twice. fANOVA rather than Optuna 5's default (PED-ANOVA) because it
    ranks the parameters better on sweeps of tens of trials (benchmarks/README.md),
    and it is seeded with the sweep's seed so that every call gives the same answer.
    """
    ids = queries.best_trial_ids(conn, study_id_of(conn, sweep), sweep.n_trials)
    rows = queries.trial_rows(conn, ids, ())
    if len(rows) < MIN_TRIALS:
        raise NotEnoughTrials(
            f"sweep {sweep.name!r} has {len(rows)} completed trials; importances need "
            f"at least {MIN_TRIALS}; try again when more have finished"
        )
    distributions = Space.model_validate(sweep.space).distributions()
    study = optuna.create_study(direction="minimize")  # in memory, for the evaluator only
    study.add_trials(
        [
            optuna.trial.create_trial(
                params=row.params, distributions=distributions, value=row.value
            )
            for row in rows
        ]
    )
    importances = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=sweep.seed))
    return Importances({name: float(share) for name, share in importances.items()}, len(rows))
