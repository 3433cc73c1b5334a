"""Duplicate configurations: a proposal identical to a completed trial takes its result.

Samplers propose the same point again, most often over ``choices`` spaces. The
claim checks each proposal, under the sweep's lock, against the sweep's
COMPLETE trials; a twin's value, metrics and curves are copied to the new trial,
which completes at once with ``reused_from`` set and still counts in the budget.
"""

from __future__ import annotations

import logging

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import Connection

from sweep.store import queries
from sweep.store.optuna_compat import trial_id
from sweep.store.trial_writes import set_user_attrs

log = logging.getLogger("sweep.trials")

COPIED_ATTRS = ("metrics", "curves", "seed")  # the run it repeats


def reuse_if_duplicate(
    conn: Connection, storage: RDBStorage, study: optuna.Study, study_id: int, trial: optuna.Trial
) -> bool:
    """Complete ``trial`` with the result of a COMPLETE trial of the same params, if any."""
    internal = {
        name: float(trial.distributions[name].to_internal_repr(value))
        for name, value in trial.params.items()
    }
    twin = queries.complete_trial_with_params(conn, study_id, internal)
    if twin is None:
        return False
    twin_id, twin_number = twin
    # The study's cached view holds the finished trials it has read: no query for the twin
    # (unless it was added out of order, unseen by this view).
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    source = next((t for t in finished if t.number == twin_number), None)
    source = source or storage.get_trial(twin_id)
    copied = {key: source.user_attrs[key] for key in COPIED_ATTRS if key in source.user_attrs}
    # Its own transaction, before the tell: on SQLite the claim's would hold the one write
    # lock that Optuna's tell (another connection) then waits for.
    with conn.engine.begin() as own:
        set_user_attrs(own, trial_id(trial), {**copied, queries.REUSED_MARK: twin_number})
    study.tell(trial, source.value)
    log.info(
        "reuse sweep=%s trial=%d: same params as trial %d, its result copied without training",
        study.study_name,
        trial.number,
        twin_number,
        extra={
            "event": "reuse",
            "sweep": study.study_name,
            "trial": trial.number,
            "worker": None,
            "reused_from": twin_number,
        },
    )
    return True
