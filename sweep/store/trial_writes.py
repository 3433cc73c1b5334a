"""Writes to Optuna's trial tables that Optuna makes one transaction each, as one statement
each in the caller's transaction: several user attributes of a trial, and its heartbeat."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from sweep.store.engine import statement_time, upsert
from sweep.store.queries import _heartbeats, _user_attrs


def set_user_attrs(conn: Connection, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Set (insert or replace) user attributes of a trial, stored as Optuna stores them."""
    if not attrs:
        return
    rows = [
        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        for key, value in attrs.items()
    ]
    statement = upsert(conn, _user_attrs).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=["trial_id", "key"], set_={"value_json": statement.excluded.value_json}
    )
    conn.execute(statement)


def record_heartbeat(conn: Connection, trial_id: int) -> None:
    """Renew (or take) the trial's heartbeat, on the database clock as Optuna's reaper reads it."""
    now = statement_time(conn)
    statement = upsert(conn, _heartbeats).values(trial_id=trial_id, heartbeat=now)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["trial_id"], set_={"heartbeat": now})
    )


def start_lease(conn: Connection, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """A claimed trial's first heartbeat and the attributes of this run of it (who runs it,
    which attempt, its seed), in two statements of the claim's own transaction."""
    record_heartbeat(conn, trial_id)
    set_user_attrs(conn, trial_id, attrs)
