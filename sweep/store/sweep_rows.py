"""Writes to a sweep's row that must not race: every status change is a compare-and-set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from sweep.definition.status import UNFINISHED_STATUSES, SweepStatus
from sweep.store.tables import Sweep


def set_status(
    session: Session,
    sweep_id: int,
    status: SweepStatus,
    *,
    only_from: Iterable[SweepStatus],
    **columns: Any,
) -> bool:
    """Move the sweep to ``status`` (and set ``columns``) if it is in one of ``only_from``.

    One UPDATE … WHERE status IN (…): a pause or cancel that committed a moment
    earlier is never overwritten. True if the sweep moved.
    """
    result = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status.in_([str(s) for s in only_from]))
        .values(status=str(status), **columns)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def add_budget(session: Session, sweep_id: int, n_trials: int, *, reopen: bool) -> bool:
    """Add ``n_trials`` to the sweep's budget: if ``reopen``, only while it is completed, and it
    runs again; else only while it is unfinished. One compare-and-set UPDATE; True if it moved."""
    sources = (SweepStatus.COMPLETED,) if reopen else UNFINISHED_STATUSES
    columns: dict[str, Any] = {"n_trials": Sweep.n_trials + n_trials}
    if reopen:
        columns.update(status=str(SweepStatus.RUNNING), finished_at=None)
    result = session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id, Sweep.status.in_([str(s) for s in sources]))
        .values(**columns)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0) == 1)
