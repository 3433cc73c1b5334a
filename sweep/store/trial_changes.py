"""What changed in a study's trials since a worker last looked: the SQL behind its pruning view.

A worker's view of a study reads each finished trial once and, of the trials it
saw unfinished, only their state and the epochs reported after the last one it saw.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, column, or_, select, table

from sweep.store.queries import study_id

_trials = table("trials", column("trial_id"), column("number"), column("study_id"), column("state"))
_values = table(
    "trial_values", column("trial_id"), column("objective"), column("value"), column("value_type")
)
_steps = table(
    "trial_intermediate_values",
    column("trial_id"),
    column("step"),
    column("intermediate_value"),
    column("intermediate_value_type"),
)
_system_attrs = table(
    "trial_system_attributes", column("trial_id"), column("key"), column("value_json")
)
_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


@dataclass
class TrialChange:
    """One trial as it stands now, with what its reader has not seen of it yet."""

    trial_id: int
    number: int
    state: str
    value: float | None
    steps: dict[int, float] = field(default_factory=dict)  # epochs after the last one seen
    system_attrs: dict[str, Any] = field(default_factory=dict)


def trial_changes(
    conn: Connection,
    study_name: str,
    *,
    from_number: int,
    unfinished: dict[int, int],
    system_prefix: str | None = None,
) -> list[TrialChange]:
    """Trials of the study numbered ``from_number`` or more (in full), and the trials in
    ``unfinished`` (trial id -> last step seen) with the steps after that; in number order.

    ``system_prefix``: also the system attributes whose key starts with it (a pruner's
    records, such as successive halving's ``completed_rung_``).
    """
    study = study_id(conn, study_name)
    if study is None:
        return []
    status_query = (
        select(_trials.c.trial_id, _trials.c.number, _trials.c.state, _values.c.value)
        .outerjoin(
            _values, and_(_values.c.trial_id == _trials.c.trial_id, _values.c.objective == 0)
        )
        .where(
            _trials.c.study_id == study,
            or_(_trials.c.number >= from_number, _trials.c.trial_id.in_(list(unfinished))),
        )
        .order_by(_trials.c.number)
    )
    changes = {
        int(tid): TrialChange(int(tid), int(number), str(state), value)
        for tid, number, state, value in conn.execute(status_query)
    }
    if not changes:
        return []
    new = [tid for tid in changes if tid not in unfinished]
    seen = [
        and_(_steps.c.trial_id == tid, _steps.c.step > step) for tid, step in unfinished.items()
    ]
    steps_query = select(
        _steps.c.trial_id,
        _steps.c.step,
        _steps.c.intermediate_value,
        _steps.c.intermediate_value_type,
    ).where(or_(_steps.c.trial_id.in_(new), *seen))
    for tid, step, value, kind in conn.execute(steps_query):
        changes[int(tid)].steps[int(step)] = _SPECIAL.get(str(kind), value)
    if system_prefix is not None:
        attrs_query = select(
            _system_attrs.c.trial_id, _system_attrs.c.key, _system_attrs.c.value_json
        ).where(
            _system_attrs.c.trial_id.in_(list(changes)),
            _system_attrs.c.key.startswith(system_prefix),
        )
        for tid, key, value_json in conn.execute(attrs_query):
            changes[int(tid)].system_attrs[str(key)] = json.loads(value_json)
    return sorted(changes.values(), key=lambda change: change.number)
