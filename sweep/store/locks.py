"""The per-sweep claim lock: the other place SQLite and PostgreSQL differ."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from sweep.store.engine import is_sqlite
from sweep.store.tables import Sweep


@contextmanager
def sweep_lock(session: Session, sweep_id: int) -> Iterator[None]:
    """Hold the per-sweep claim lock until the block ends.

    PostgreSQL: a row lock on the sweep, released when the session's transaction
    ends. SQLite: an exclusive file lock beside the database file, since SQLite
    has no row locks and Optuna writes through its own connection.
    """
    bind = session.get_bind()
    url = str(bind.engine.url)
    if not is_sqlite(url):
        session.execute(select(Sweep.id).where(Sweep.id == sweep_id).with_for_update())
        yield
        return
    database = make_url(url).database or ""
    lock_path = Path(f"{database}.claim-lock") if database not in ("", ":memory:") else None
    if lock_path is None:
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
