"""The per-sweep claim lock: the other place SQLite and PostgreSQL differ.

Whoever changes what a sweep's trials add up to (a claim, failing a trial and
queuing its retry, reaping, planning evaluation, settling) does it inside
``locked_sweep``, so each sees the others' changes whole, never half done.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from sweep.store.engine import is_sqlite, transaction
from sweep.store.tables import Sweep


@contextmanager
def locked_sweep(factory: sessionmaker[Session], sweep_id: int) -> Iterator[Session]:
    """A transaction that holds the sweep's claim lock until it has committed or rolled back.

    PostgreSQL: a row lock on the sweep, taken in the transaction. SQLite: an
    exclusive file lock beside the database file (SQLite has no row locks, and
    Optuna writes through its own connection), released only after the commit.
    """
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    lock_path = _sqlite_lock_path(str(bind.url))
    if lock_path is None:
        with transaction(factory) as session:
            if not is_sqlite(str(bind.url)):
                session.execute(select(Sweep.id).where(Sweep.id == sweep_id).with_for_update())
            yield session
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with transaction(factory) as session:
            yield session
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _sqlite_lock_path(url: str) -> Path | None:
    """The lock file of an SQLite database file; None for PostgreSQL and in-memory SQLite."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database or ""
    return Path(f"{database}.claim-lock") if database not in ("", ":memory:") else None
