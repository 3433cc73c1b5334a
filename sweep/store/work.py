"""Which sweep a free worker serves: one statement over the active sweeps' running and
pending trials, so an idle poll costs one query whatever the number of sweeps.

The order: sweeps with a trial to hand out first, then the highest ``priority``;
among equals, fair share across the API tokens that created the sweeps (the token
whose sweeps run the fewest trials first, then the sweep running the fewest),
then the oldest. A sweep at its ``max_concurrent`` has no trial to hand out.
Running trials count those of the sweep's evaluation study (``<name>.eval``) too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Row,
    Select,
    Subquery,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy import type_coerce as typed
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from sweep.definition.evaluation import EVALUATION_SUFFIX, STAGE_KEY, Stage
from sweep.definition.status import ACTIVE_STATUSES
from sweep.store.queries import (
    NOT_STARTED_MARKS,
    _heartbeats,
    _state,
    _studies,
    _study_user_attrs,
    _system_attrs,
    _trials,
)
from sweep.store.tables import Sweep


@dataclass(frozen=True)
class ActiveSweep:
    """What a free worker needs of a sweep to choose it, claim from it and reap it."""

    id: int
    name: str
    n_trials: int
    max_attempts: int


@dataclass(frozen=True)
class SweepWork:
    """An active sweep as a free worker sees it."""

    sweep: ActiveSweep
    running: int  # RUNNING trials, search and evaluation
    claimable: bool  # a trial is waiting or the budget has room, under max_concurrent
    search_finished: bool  # budget handed out, nothing waiting or running in the search
    evaluation_idle: bool  # no evaluation trial waiting, and none running past the first stage
    stale_for: float | None  # seconds since the oldest heartbeat of a running trial

    @property
    def needs_settling(self) -> bool:
        """Nothing to hand out, but evaluation may plan its next stage or the sweep may end."""
        return not self.claimable and self.search_finished and self.evaluation_idle


def sweeps_by_share(factory: sessionmaker[Session]) -> list[SweepWork]:
    """Every active sweep, in the order free workers should serve them (one query, of the
    columns a worker needs: no ORM rows, so its cost grows little with the sweeps)."""
    studies = _studies_of_active_sweeps()
    is_main = studies.c.main == 1
    running = _state == "RUNNING"
    retries = _system_attrs.alias("retries")
    stage = _study_user_attrs.alias("stage")

    def count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    per_sweep = (
        select(
            studies.c.sweep_id,
            count(running).label("running"),
            count(and_(is_main, running)).label("search_running"),
            count(and_(is_main, _state == "WAITING")).label("waiting"),
            count(
                and_(is_main, _trials.c.trial_id.is_not(None), retries.c.trial_id.is_(None))
            ).label("started"),
            count(and_(~is_main, _state == "WAITING")).label("eval_waiting"),
            count(and_(~is_main, running)).label("eval_running"),
            func.max(stage.c.value_json).label("stage"),
            func.min(case((running, _heartbeats.c.heartbeat))).label("oldest_beat"),
        )
        .select_from(studies)
        .outerjoin(_trials, _trials.c.study_id == studies.c.study_id)
        .outerjoin(
            retries,
            and_(retries.c.trial_id == _trials.c.trial_id, retries.c.key.in_(NOT_STARTED_MARKS)),
        )
        .outerjoin(
            stage,
            and_(stage.c.study_id == studies.c.study_id, ~is_main, stage.c.key == STAGE_KEY),
        )
        .outerjoin(_heartbeats, _heartbeats.c.trial_id == _trials.c.trial_id)
        .group_by(studies.c.sweep_id)
        .subquery()
    )
    c = per_sweep.c
    claimable = and_(
        or_(c.waiting > 0, c.started < Sweep.n_trials, c.eval_waiting > 0),
        or_(Sweep.max_concurrent.is_(None), c.running < Sweep.max_concurrent),
    )
    owner_running = func.sum(c.running).over(partition_by=func.coalesce(Sweep.created_by, 0))
    query = (
        select(
            Sweep.id,
            Sweep.name,
            Sweep.n_trials,
            Sweep.max_attempts,
            c.running,
            case((claimable, 1), else_=0).label("claimable"),
            c.search_running,
            c.waiting,
            c.started,
            c.eval_waiting,
            c.eval_running,
            c.stage,
            typed(c.oldest_beat, DateTime).label("oldest_beat"),
            typed(func.now(), DateTime).label("now"),
        )
        .join(per_sweep, c.sweep_id == Sweep.id)
        .order_by(
            case((claimable, 0), else_=1),
            Sweep.priority.desc(),
            owner_running.asc(),
            c.running.asc(),
            Sweep.id.asc(),
        )
    )
    with factory() as session:
        rows = session.execute(query).all()
    return [_work(row) for row in rows]


def _studies_of_active_sweeps() -> Subquery:
    """(sweep_id, study_id, main): each active sweep's own study (main = 1) and its evaluation
    study, each found by an equality on the name, so the database joins them by hash or
    index and not by comparing every sweep with every study."""

    def studies_named(
        name: ColumnElement[str] | InstrumentedAttribute[str], main: int
    ) -> Select[Any]:
        return (
            select(Sweep.id.label("sweep_id"), _studies.c.study_id, literal(main).label("main"))
            .join(_studies, _studies.c.study_name == name)
            .where(Sweep.status.in_(ACTIVE_STATUSES))
        )

    evaluation = Sweep.name + literal(EVALUATION_SUFFIX)
    both = union_all(studies_named(Sweep.name, 1), studies_named(evaluation, 0))
    return both.subquery("sweep_studies")


def _work(row: Row[Any]) -> SweepWork:
    values: tuple[Any, ...] = tuple(row)
    sweep = ActiveSweep(*values[:4])
    running, claimable, search_running, waiting, started, eval_waiting, eval_running = (
        int(v) for v in values[4:11]
    )
    stage_json, oldest, now = values[11:14]
    stage = json.loads(stage_json) if stage_json else Stage.SEARCH
    stale_for = None
    if oldest is not None and isinstance(now, datetime):
        # naive, like the heartbeat column (compared as Optuna's reaper does, on the database clock)
        stale_for = (now.replace(tzinfo=None) - oldest).total_seconds()
    return SweepWork(
        sweep=sweep,
        running=running,
        claimable=bool(claimable),
        search_finished=not search_running and not waiting and started >= sweep.n_trials,
        evaluation_idle=not eval_waiting and (stage == Stage.SEARCH or not eval_running),
        stale_for=stale_for,
    )
