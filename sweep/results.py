"""What a sweep found: the best configurations, trial pages and one trial's curves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy import Engine

from sweep import queries
from sweep.errors import NoResultYet, NotFound
from sweep.models import Sweep


@dataclass(frozen=True)
class TrialResult:
    """One trial as a user sees it."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    epoch: int | None
    metrics: dict[str, Any]
    attempt: int
    worker: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    curves: dict[str, list[float]]

    @classmethod
    def from_frozen(cls, trial: FrozenTrial) -> TrialResult:
        attrs = trial.user_attrs
        metrics = dict(attrs.get("metrics", {}))
        return cls(
            number=trial.number,
            state=trial.state.name,
            params=dict(trial.params),
            value=trial.value if trial.state.name == "COMPLETE" else None,
            epoch=metrics.get("epoch"),
            metrics=metrics,
            attempt=int(attrs.get("attempt", 1)),
            worker=attrs.get("worker"),
            error=attrs.get("error"),
            started_at=trial.datetime_start,
            finished_at=trial.datetime_complete,
            curves=dict(attrs.get("curves", {})),
        )


def _study_id(engine: Engine, sweep: Sweep) -> int:
    study = queries.study_id(engine, sweep.name)
    if study is None:
        raise NotFound(f"sweep {sweep.name!r} has no Optuna study in this database")
    return study


def top_trials(engine: Engine, storage: RDBStorage, sweep: Sweep, k: int) -> list[TrialResult]:
    """The ``k`` completed trials with the lowest validation loss, best first."""
    ids = queries.best_trial_ids(engine, _study_id(engine, sweep), k)
    return [TrialResult.from_frozen(storage.get_trial(trial_id)) for trial_id in ids]


def best_trial(engine: Engine, storage: RDBStorage, sweep: Sweep) -> TrialResult:
    """The completed trial with the lowest validation loss; NoResultYet before there is one."""
    best = top_trials(engine, storage, sweep, 1)
    if not best:
        raise NoResultYet(f"no trial of sweep {sweep.name!r} has completed yet; try again later")
    return best[0]


def trial_page(
    engine: Engine,
    storage: RDBStorage,
    sweep: Sweep,
    *,
    after_number: int = -1,
    limit: int = 50,
    state: str | None = None,
) -> list[TrialResult]:
    """Up to ``limit`` trials numbered after ``after_number``, optionally in one state."""
    ids = queries.trial_ids_page(
        engine, _study_id(engine, sweep), after_number=after_number, limit=limit, state=state
    )
    return [TrialResult.from_frozen(storage.get_trial(trial_id)) for trial_id in ids]


def trial_result(engine: Engine, storage: RDBStorage, sweep: Sweep, number: int) -> TrialResult:
    """Trial ``number`` of the sweep, with its curves."""
    trial_id = queries.trial_id_by_number(engine, _study_id(engine, sweep), number)
    if trial_id is None:
        raise NotFound(f"sweep {sweep.name!r} has no trial {number}")
    return TrialResult.from_frozen(storage.get_trial(trial_id))
