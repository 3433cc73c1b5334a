"""What a sweep found: the best configurations, trial pages and one trial's curves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    def from_row(cls, row: queries.TrialRow) -> TrialResult:
        attrs = row.user_attrs
        metrics = dict(attrs.get("metrics", {}))
        return cls(
            number=row.number,
            state=row.state,
            params=row.params,
            value=row.value if row.state == "COMPLETE" else None,
            epoch=metrics.get("epoch"),
            metrics=metrics,
            attempt=int(attrs.get("attempt", 1)),
            worker=attrs.get("worker"),
            error=attrs.get("error"),
            started_at=row.started_at,
            finished_at=row.finished_at,
            curves=dict(attrs.get("curves", {})),
        )


SUMMARY_ATTRS = ("metrics", "attempt", "worker", "error")
DETAIL_ATTRS = (*SUMMARY_ATTRS, "curves")


def _results(engine: Engine, ids: list[int], keys: tuple[str, ...]) -> list[TrialResult]:
    return [TrialResult.from_row(row) for row in queries.trial_rows(engine, ids, keys)]


def _study_id(engine: Engine, sweep: Sweep) -> int:
    study = queries.study_id(engine, sweep.name)
    if study is None:
        raise NotFound(f"sweep {sweep.name!r} has no Optuna study in this database")
    return study


def top_trials(engine: Engine, sweep: Sweep, k: int) -> list[TrialResult]:
    """The ``k`` completed trials with the lowest validation loss, best first."""
    return _results(
        engine, queries.best_trial_ids(engine, _study_id(engine, sweep), k), SUMMARY_ATTRS
    )


def best_trial(engine: Engine, sweep: Sweep) -> TrialResult:
    """The completed trial with the lowest validation loss; NoResultYet before there is one."""
    best = top_trials(engine, sweep, 1)
    if not best:
        raise NoResultYet(f"no trial of sweep {sweep.name!r} has completed yet; try again later")
    return best[0]


def trial_page(
    engine: Engine,
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
    return _results(engine, ids, SUMMARY_ATTRS)


def trial_result(engine: Engine, sweep: Sweep, number: int) -> TrialResult:
    """Trial ``number`` of the sweep, with its curves."""
    trial_id = queries.trial_id_by_number(engine, _study_id(engine, sweep), number)
    if trial_id is None:
        raise NotFound(f"sweep {sweep.name!r} has no trial {number}")
    return _results(engine, [trial_id], DETAIL_ATTRS)[0]
