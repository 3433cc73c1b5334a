"""Sweep use cases: create, read, list and control. Functions flush, never commit."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import optuna
from optuna.storages import RDBStorage
from sqlalchemy import Connection, event, select
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.evaluation import evaluation_study_name
from sweep.definition.spec import SweepScheduling, SweepSpec
from sweep.definition.status import TRANSITIONS, UNFINISHED_STATUSES, SweepStatus
from sweep.errors import AlreadyExists, InvalidSweep, InvalidTransition, NotFound
from sweep.scheduler.evaluation import create_evaluation_study, reopen_evaluation
from sweep.service.warm_start import copy_finished_trials, warm_start_source
from sweep.store import queries
from sweep.store.optuna_storage import create_study
from sweep.store.sweep_rows import add_budget, set_status
from sweep.store.tables import Sweep, utcnow


@dataclass(frozen=True)
class SweepProgress:
    """A sweep with how far along it is, for display."""

    sweep: Sweep
    counts: dict[str, int]
    configurations: int
    evaluations: dict[str, int] = field(default_factory=dict)
    copied: int = 0  # trials copied from the sweep it started from


def create_sweep(
    session: Session, storage: RDBStorage, spec: SweepSpec, *, created_by: int | None = None
) -> Sweep:
    """Store a new sweep and create its Optuna study; the sweep starts queued.

    ``created_by`` is the id of the API token asking: workers share themselves out
    fairly between the tokens that created the sweeps.
    """
    if session.scalar(select(Sweep.id).where(Sweep.name == spec.name)) is not None:
        raise AlreadyExists(f"a sweep named {spec.name!r} already exists; pick another name")
    source = warm_start_source(session, spec)
    sweep = Sweep(
        name=spec.name,
        description=spec.description,
        task=spec.task,
        task_options=spec.task_options,
        n_trials=spec.n_trials,
        epochs=spec.epochs,
        space=spec.space.as_dict(),
        sampler=spec.sampler,
        pruner=spec.pruner,
        penalty=spec.penalty,
        patience=spec.patience,
        seed=spec.seed,
        max_attempts=spec.max_attempts,
        search_options={"sampler": spec.sampler_options, "pruner": spec.pruner_options},
        baseline=spec.baseline,
        reevaluate_top=spec.reevaluate_top,
        reevaluate_seeds=spec.reevaluate_seeds,
        race=spec.race,
        race_seeds=spec.race_seeds,
        test_split=spec.test_split,
        priority=spec.priority,
        max_concurrent=spec.max_concurrent,
        created_by=created_by,
        status=SweepStatus.QUEUED,
        created_at=utcnow(),
    )
    # The studies first: on SQLite a flushed insert would hold the write lock Optuna needs.
    # Optuna commits them at once, so they are deleted again if the sweep's row is not.
    created: list[str] = []
    _delete_studies_on_rollback(session, storage, created)
    try:
        create_study(storage, sweep)
        created.append(sweep.name)
        create_evaluation_study(storage, sweep)
        created.append(evaluation_study_name(sweep.name))
        if source is not None:
            copy_finished_trials(storage, source.name, sweep.name)
    except optuna.exceptions.DuplicatedStudyError:
        raise AlreadyExists(
            f"an Optuna study named {spec.name!r} already exists in this database"
        ) from None
    session.add(sweep)
    session.flush()
    return sweep


def _delete_studies_on_rollback(session: Session, storage: RDBStorage, names: list[str]) -> None:
    """Delete the studies ``names`` if the session's transaction rolls back instead of
    committing, so that a sweep that was never stored leaves no study and its name stays free."""

    settled: list[bool] = []  # the transaction's fate is known once; later ones are not ours

    def rolled_back(_session: Session, _transaction: object) -> None:
        if settled:
            return
        settled.append(True)
        for name in names:
            with contextlib.suppress(KeyError):  # already gone
                storage.delete_study(storage.get_study_id_from_name(name))

    def committed(_session: Session) -> None:
        settled.append(True)

    event.listen(session, "after_soft_rollback", rolled_back)
    event.listen(session, "after_commit", committed)


def get_sweep(session: Session, name: str) -> Sweep:
    """The sweep called ``name``."""
    sweep = session.scalar(select(Sweep).where(Sweep.name == name))
    if sweep is None:
        raise NotFound(f"no sweep named {name!r}")
    return sweep


def list_sweeps(
    session: Session, *, status: str | None = None, limit: int = 50, before_id: int | None = None
) -> list[Sweep]:
    """Sweeps newest first, optionally only those in ``status``, older than ``before_id``."""
    query = select(Sweep).order_by(Sweep.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Sweep.status == status)
    if before_id is not None:
        query = query.where(Sweep.id < before_id)
    return list(session.scalars(query))


def control_sweep(session: Session, name: str, action: str) -> Sweep:
    """Pause, resume or cancel a sweep; InvalidTransition if its state does not allow it."""
    if action not in TRANSITIONS:
        raise InvalidSweep(f"unknown action {action!r}")
    sources, target = TRANSITIONS[action]
    sweep = get_sweep(session, name)
    finished = {"finished_at": utcnow()} if target == SweepStatus.CANCELLED else {}
    if not set_status(session, sweep.id, target, only_from=sources, **finished):
        session.refresh(sweep)  # what it is now, which a worker may just have changed
        raise InvalidTransition(f"cannot {action} sweep {name!r}: it is {sweep.status}")
    return sweep


def change_scheduling(session: Session, name: str, change: SweepScheduling) -> Sweep:
    """Set the sweep's ``priority`` and/or ``max_concurrent`` (the fields ``change`` names).

    InvalidTransition for a finished sweep: it has no trials left to share out.
    """
    sweep = get_sweep(session, name)
    values = change.changes()
    # A row lock (PostgreSQL; SQLite has one writer) so a concurrent status change is seen.
    session.refresh(sweep, with_for_update=True)
    if sweep.status not in UNFINISHED_STATUSES:
        raise InvalidTransition(f"cannot change sweep {name!r}: it is {sweep.status}")
    for key, value in values.items():
        setattr(sweep, key, value)
    session.flush()
    return sweep


def sweep_progress(conn: Connection, sweep: Sweep) -> SweepProgress:
    """Trial counts per state and configurations started, read from the study."""
    study = queries.study_id(conn, sweep.name)
    if study is None:
        return SweepProgress(sweep, {}, 0)
    evaluation = queries.study_id(conn, evaluation_study_name(sweep.name))
    return SweepProgress(
        sweep,
        queries.state_counts(conn, study),
        queries.configurations_started(conn, study),
        queries.state_counts(conn, evaluation) if evaluation is not None else {},
        queries.copied_trials(conn, study),
    )


def extend_sweep(
    settings: Settings, factory: sessionmaker[Session], session: Session, name: str, n_trials: int
) -> Sweep:
    """Add ``n_trials`` to a sweep's budget; a completed sweep runs again, and its re-evaluation
    is planned anew over the best configurations once the new trials have finished.
    InvalidTransition for a cancelled or failed sweep."""
    sweep = get_sweep(session, name)
    if sweep.status not in (*UNFINISHED_STATUSES, SweepStatus.COMPLETED):
        raise InvalidTransition(f"cannot extend sweep {name!r}: it is {sweep.status}")
    # Before the row update: on SQLite the request's write would block the evaluation study's.
    reopen_evaluation(settings, factory, sweep.id)
    reopen = sweep.status == SweepStatus.COMPLETED
    if not add_budget(session, sweep.id, n_trials, reopen=reopen) and not (
        reopen and add_budget(session, sweep.id, n_trials, reopen=False)
    ):
        session.refresh(sweep)
        raise InvalidTransition(f"cannot extend sweep {name!r}: it is {sweep.status}")
    session.refresh(sweep)
    return sweep
