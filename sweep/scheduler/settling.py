"""Ending things: reaping trials whose worker went silent, and settling a sweep that is done."""

from __future__ import annotations

import logging

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.evaluation import evaluation_study_name
from sweep.definition.status import UNFINISHED_STATUSES, SweepStatus
from sweep.store import queries
from sweep.store.locks import locked_sweep
from sweep.store.optuna_storage import storage_for
from sweep.store.sweep_rows import set_status
from sweep.store.tables import Sweep, utcnow
from sweep.store.work import ActiveSweep

log = logging.getLogger("sweep.trials")
GIVE_UP_AFTER = 3  # configurations that fail every attempt before a hopeless sweep is failed


def reap_stale_trials(
    settings: Settings, factory: sessionmaker[Session], sweep: Sweep | ActiveSweep
) -> None:
    """Fail the sweep's trials whose heartbeats stopped, and re-queue their params.

    Under the sweep's lock: a failed trial and its retry appear to others together. A
    trial whose claim never committed goes back to WAITING.
    """
    storage = storage_for(settings, sweep.max_attempts)
    with locked_sweep(factory, sweep.id) as session:
        # Every claim records its trial's first heartbeat before it commits, under this lock:
        # a RUNNING trial without one here is a claim a database restart cut off after
        # ``ask`` committed. Nobody trains it, and without a heartbeat it would never go
        # stale: back to WAITING, with its params, for the next claim (not an attempt).
        for orphan in queries.unleased_trials(session.connection(), sweep.name):
            storage.set_trial_state_values(orphan, TrialState.WAITING)
            log.warning("requeue sweep=%s trial id=%d: its claim was cut off", sweep.name, orphan)
        study = optuna.load_study(study_name=sweep.name, storage=storage)
        optuna.storages.fail_stale_trials(study)
        _reap_evaluation_trials(storage, sweep.name)


def _reap_evaluation_trials(storage: RDBStorage, name: str) -> None:
    try:
        study = optuna.load_study(study_name=evaluation_study_name(name), storage=storage)
    except KeyError:  # a sweep created before evaluation studies existed
        return
    optuna.storages.fail_stale_trials(study)


def settle_sweep(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> None:
    """End the sweep: completed once its budget is spent and nothing runs; failed early
    when nothing has succeeded after GIVE_UP_AFTER configurations' worth of attempts."""
    with locked_sweep(factory, sweep_id) as session:
        sweep = session.get(Sweep, sweep_id, populate_existing=True)
        if sweep is None or sweep.status not in UNFINISHED_STATUSES:
            return
        conn = session.connection()
        study_id = queries.study_id(conn, sweep.name)
        if study_id is None:
            return
        counts = queries.state_counts(conn, study_id)
        succeeded = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
        failures = counts.get("FAIL", 0)
        hopeless = not succeeded and failures >= GIVE_UP_AFTER * sweep.max_attempts
        if not hopeless:
            if counts.get("RUNNING", 0) or counts.get("WAITING", 0):
                return
            if queries.configurations_started(conn, study_id) < sweep.n_trials:
                return
            if not queries.evaluation_finished(conn, sweep.name):
                return
        if succeeded:
            set_status(
                session,
                sweep_id,
                SweepStatus.COMPLETED,
                only_from=UNFINISHED_STATUSES,
                finished_at=utcnow(),
            )
            return
        last = _last_error(storage_for(settings, sweep.max_attempts), sweep.name)
        error = f"no trial succeeded in {failures} attempts; last error: {last}"
        if set_status(
            session,
            sweep_id,
            SweepStatus.FAILED,
            only_from=UNFINISHED_STATUSES,
            finished_at=utcnow(),
            error=error,
        ):
            log.error("sweep %s failed: %s", sweep.name, error)


def _last_error(storage: RDBStorage, name: str) -> str:
    study = optuna.load_study(study_name=name, storage=storage)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    errors = [str(t.user_attrs["error"]) for t in failed if "error" in t.user_attrs]
    return errors[-1] if errors else "unknown"
