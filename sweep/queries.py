"""Read-only SQL over Optuna's study tables.

Counting, ranking and paging in the database, and reading a page of trials in
four queries whatever its size, keep the API fast however many trials a study holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna.distributions import json_to_distribution
from sqlalchemy import Engine, String, case, cast, column, func, select, table

_studies = table("studies", column("study_id"), column("study_name"))
_trials = table(
    "trials",
    column("trial_id"),
    column("number"),
    column("study_id"),
    column("state"),
    column("datetime_start"),
    column("datetime_complete"),
)
_params = table(
    "trial_params",
    column("trial_id"),
    column("param_name"),
    column("param_value"),
    column("distribution_json"),
)
_user_attrs = table(
    "trial_user_attributes", column("trial_id"), column("key"), column("value_json")
)
_values = table(
    "trial_values", column("trial_id"), column("objective"), column("value"), column("value_type")
)
_system_attrs = table("trial_system_attributes", column("trial_id"), column("key"))
# Optuna's state columns are enum types on PostgreSQL; compare them as text.
_state = cast(_trials.c.state, String)
_value_type = cast(_values.c.value_type, String)

RETRY_MARK = "failed_trial"  # the system attribute Optuna's retry callback puts on a retry


_study_ids: dict[tuple[str, str], int] = {}


def study_id(engine: Engine, name: str) -> int | None:
    """The Optuna study id of the study called ``name`` (cached: names never change)."""
    key = (str(engine.url), name)
    if key not in _study_ids:
        with engine.connect() as conn:
            found = conn.execute(
                select(_studies.c.study_id).where(_studies.c.study_name == name)
            ).scalar()
        if found is None:
            return None
        _study_ids[key] = int(found)
    return _study_ids[key]


def state_counts(engine: Engine, study: int) -> dict[str, int]:
    """Number of trials per Optuna state (RUNNING, COMPLETE, …)."""
    query = select(_state, func.count()).where(_trials.c.study_id == study).group_by(_state)
    with engine.connect() as conn:
        return {str(state): int(n) for state, n in conn.execute(query)}


def configurations_started(engine: Engine, study: int) -> int:
    """Configurations the sweep has spent its budget on: every trial that is not a retry."""
    retries = select(_system_attrs.c.trial_id).where(_system_attrs.c.key == RETRY_MARK)
    query = (
        select(func.count())
        .select_from(_trials)
        .where(_trials.c.study_id == study, _trials.c.trial_id.not_in(retries))
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def budget_counts(engine: Engine, study: int) -> tuple[int, int, int]:
    """(WAITING trials, configurations started, all trials) of the study, in one query."""
    retries = select(_system_attrs.c.trial_id).where(_system_attrs.c.key == RETRY_MARK)
    query = select(
        func.coalesce(func.sum(case((_state == "WAITING", 1), else_=0)), 0),
        func.coalesce(func.sum(case((_trials.c.trial_id.not_in(retries), 1), else_=0)), 0),
        func.count(),
    ).where(_trials.c.study_id == study)
    with engine.connect() as conn:
        waiting, started, total = conn.execute(query).one()
    return int(waiting), int(started), int(total)


def best_trial_ids(engine: Engine, study: int, k: int) -> list[int]:
    """Ids of the ``k`` complete trials with the lowest finite objective, best first."""
    query = (
        select(_trials.c.trial_id)
        .join(_values, _values.c.trial_id == _trials.c.trial_id)
        .where(
            _trials.c.study_id == study,
            _state == "COMPLETE",
            _values.c.objective == 0,
            _value_type == "FINITE",
        )
        .order_by(_values.c.value.asc(), _trials.c.number.asc())
        .limit(k)
    )
    with engine.connect() as conn:
        return [int(row) for row in conn.execute(query).scalars()]


def trial_ids_page(
    engine: Engine, study: int, *, after_number: int, limit: int, state: str | None
) -> list[int]:
    """Ids of up to ``limit`` trials numbered after ``after_number``, in number order."""
    query = select(_trials.c.trial_id).where(
        _trials.c.study_id == study, _trials.c.number > after_number
    )
    if state is not None:
        query = query.where(_state == state)
    query = query.order_by(_trials.c.number.asc()).limit(limit)
    with engine.connect() as conn:
        return [int(row) for row in conn.execute(query).scalars()]


def trial_id_by_number(engine: Engine, study: int, number: int) -> int | None:
    """The id of trial ``number`` of the study."""
    query = select(_trials.c.trial_id).where(
        _trials.c.study_id == study, _trials.c.number == number
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return int(found) if found is not None else None


@dataclass
class TrialRow:
    """One trial as stored: what the API shows of it."""

    trial_id: int
    number: int
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)


def trial_rows(engine: Engine, trial_ids: list[int], attr_keys: tuple[str, ...]) -> list[TrialRow]:
    """The trials ``trial_ids`` (in that order) with their value, params and some user attrs."""
    if not trial_ids:
        return []
    with engine.connect() as conn:
        rows = {
            r.trial_id: TrialRow(
                r.trial_id, r.number, str(r[2]), r.datetime_start, r.datetime_complete
            )
            for r in conn.execute(
                select(
                    _trials.c.trial_id,
                    _trials.c.number,
                    _state,
                    _trials.c.datetime_start,
                    _trials.c.datetime_complete,
                ).where(_trials.c.trial_id.in_(trial_ids))
            )
        }
        for trial_id, value in conn.execute(
            select(_values.c.trial_id, _values.c.value).where(
                _values.c.trial_id.in_(trial_ids), _values.c.objective == 0
            )
        ):
            rows[trial_id].value = value
        for trial_id, name, internal, dist_json in conn.execute(
            select(
                _params.c.trial_id,
                _params.c.param_name,
                _params.c.param_value,
                _params.c.distribution_json,
            ).where(_params.c.trial_id.in_(trial_ids))
        ):
            # Choices are stored as their index; the distribution turns it back into the value.
            dist = json_to_distribution(dist_json)
            rows[trial_id].params[name] = dist.to_external_repr(internal)
        for trial_id, key, value_json in conn.execute(
            select(_user_attrs.c.trial_id, _user_attrs.c.key, _user_attrs.c.value_json).where(
                _user_attrs.c.trial_id.in_(trial_ids), _user_attrs.c.key.in_(attr_keys)
            )
        ):
            rows[trial_id].user_attrs[key] = json.loads(value_json)
    return [rows[i] for i in trial_ids if i in rows]
