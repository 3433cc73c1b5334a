"""Claiming work: which sweeps have it, and handing one trial of a sweep to one worker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from sweep import metrics
from sweep.config import Settings
from sweep.definition.space import Space
from sweep.definition.status import ACTIVE_STATUSES, SweepStatus
from sweep.scheduler.duplicates import reuse_if_duplicate
from sweep.store import queries
from sweep.store.locks import locked_sweep
from sweep.store.optuna_compat import trial_id
from sweep.store.optuna_storage import load_study, storage_for
from sweep.store.sweep_rows import set_status
from sweep.store.tables import Sweep, utcnow
from sweep.store.trial_writes import start_lease

log = logging.getLogger("sweep.trials")


@dataclass(frozen=True)
class Claim:
    """A trial handed to one worker, with what it needs to train it."""

    sweep_id: int
    sweep_name: str
    task: str
    task_options: dict[str, Any]
    epochs: int
    penalty: str
    patience: int | None
    pruner: str
    pruner_options: dict[str, Any]
    max_attempts: int
    trial_id: int
    number: int
    params: dict[str, Any]
    seed: int
    attempt: int
    worker: str
    study_name: str = ""  # the Optuna study holding the trial; the sweep's own if empty
    evaluate_test: bool = False

    @classmethod
    def of(cls, sweep: Sweep, **trial: Any) -> Claim:
        """A claim on a trial of ``sweep``: the sweep's settings plus the trial's own fields."""
        settings: dict[str, Any] = {
            "sweep_id": sweep.id,
            "sweep_name": sweep.name,
            "task": sweep.task,
            "task_options": dict(sweep.task_options),
            "epochs": sweep.epochs,
            "penalty": sweep.penalty,
            "patience": sweep.patience,
            "pruner": sweep.pruner,
            "pruner_options": sweep.pruner_options,
            "max_attempts": sweep.max_attempts,
        }
        return cls(**{**settings, **trial})

    @property
    def study(self) -> str:
        """The name of the Optuna study the trial belongs to."""
        return self.study_name or self.sweep_name


def active_sweeps(factory: sessionmaker[Session]) -> list[Sweep]:
    """Queued and running sweeps, oldest first: the ones workers take trials from."""
    with factory() as session:
        query = select(Sweep).where(Sweep.status.in_(ACTIVE_STATUSES)).order_by(Sweep.id)
        return list(session.scalars(query))


def no_room(conn: Connection, sweep: Sweep, running_seen: int | None) -> bool:
    """Whether the sweep may not hand out a trial now (ask under its claim lock: every claim
    takes that lock, so no two claims both see room for one more).

    No room: it runs ``max_concurrent`` trials already, or more than the ``running_seen``
    the caller chose it by (another worker claimed while this one waited for the lock,
    so the fair-share choice is stale and the caller should choose again).
    """
    if sweep.max_concurrent is None and running_seen is None:
        return False
    running = queries.running_trials(conn, sweep.name)
    if running_seen is not None and running > running_seen:
        return True
    return sweep.max_concurrent is not None and running >= sweep.max_concurrent


def claim_trial(
    settings: Settings,
    factory: sessionmaker[Session],
    sweep_id: int,
    worker: str,
    *,
    running_seen: int | None = None,
) -> Claim | None:
    """Give this worker one trial of the sweep, or None if it has no work to hand out.

    Under the sweep's lock: the sweep must be queued or running, with room
    (``no_room``), and either a
    re-queued trial is waiting or the budget has room for a new configuration.
    Proposals identical to a completed trial are completed with its result on
    the way (sweep.duplicates), so a worker only gets params worth training.
    """
    asked_at = time.perf_counter()
    with locked_sweep(factory, sweep_id) as session:
        sweep = session.get(Sweep, sweep_id, populate_existing=True)
        if sweep is None or sweep.status not in ACTIVE_STATUSES:
            return None
        conn = session.connection()
        if no_room(conn, sweep, running_seen):
            return None
        study_id = queries.study_id(conn, sweep.name)
        assert study_id is not None, f"sweep {sweep.name} has no study"
        storage = storage_for(settings, sweep.max_attempts)
        space = Space.model_validate(sweep.space)
        while True:
            waiting, started, total = queries.budget_counts(conn, study_id)
            if waiting == 0 and started >= sweep.n_trials:
                return None
            # A different sampler seed per claim keeps parallel workers apart, and one
            # worker's run reproducible. A waiting trial may be older than trials this
            # process saw finish: then the study is read whole, so ask() finds it.
            study = load_study(storage, sweep, space, trials_so_far=total, fresh=waiting > 0)
            trial = study.ask(space.distributions())
            # A proposal that repeats a completed trial takes its result and uses up budget.
            if not reuse_if_duplicate(conn, storage, study, study_id, trial):
                break
        claimed = trial_id(trial)
        configuration, attempt = trial.number, 1
        if waiting:  # possibly a retry: it carries the number of the first attempt
            system_attrs = storage.get_trial_system_attrs(claimed)
            configuration = int(system_attrs.get(queries.RETRY_MARK, trial.number))
            attempt = len(system_attrs.get("retry_history", [])) + 1
        if sweep.status == SweepStatus.QUEUED:
            set_status(
                session,
                sweep.id,
                SweepStatus.RUNNING,
                only_from=(SweepStatus.QUEUED,),
                started_at=utcnow(),
            )
        seed = sweep.seed + configuration
        # Committed with the claim, after Optuna's own writes (SQLite has one writer): a first
        # heartbeat, so a worker killed before its epoch writer beats still goes stale.
        start_lease(conn, claimed, {"worker": worker, "attempt": attempt, "seed": seed})
        metrics.CLAIM_SECONDS.observe(time.perf_counter() - asked_at)
        return Claim.of(
            sweep,
            trial_id=claimed,
            number=trial.number,
            params=dict(trial.params),
            seed=seed,
            attempt=attempt,
            worker=worker,
        )
