"""The per-sweep claim lock: the other place SQLite and PostgreSQL differ.

Whoever changes what a sweep's trials add up to (a claim, failing a trial and
queuing its retry, reaping, planning evaluation, settling) does it inside
``locked_sweep``, so each sees the others' changes whole, never half done.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from sweep.store.engine import behind_transaction_pooler, is_sqlite, transaction
from sweep.store.tables import Sweep

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a NOWAIT lock that is taken


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
        if behind_transaction_pooler(bind):
            with _row_locked_without_waiting(factory, sweep_id) as session:
                yield session
            return
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


@contextmanager
def _row_locked_without_waiting(factory: sessionmaker[Session], sweep_id: int) -> Iterator[Session]:
    """The row lock, behind a transaction pooler: never waited for inside a transaction.

    Through PgBouncer every open transaction holds one of its few server connections,
    and the lock holder needs a second one for Optuna's writes. Workers waiting for the
    lock in their transactions took every server connection and the holder waited for
    one (measured: 64 workers on a pool of 20 stalled until PgBouncer's
    query_wait_timeout). So the lock is tried with NOWAIT and, when taken, the
    transaction ends and is tried again after a short jittered pause.
    """
    lock = select(Sweep.id).where(Sweep.id == sweep_id).with_for_update(nowait=True)
    while True:
        session = factory()
        try:
            session.execute(lock)
        except OperationalError as exc:
            session.close()
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            time.sleep(random.uniform(0.01, 0.1))
            continue
        break
    with session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _sqlite_lock_path(url: str) -> Path | None:
    """The lock file of an SQLite database file; None for PostgreSQL and in-memory SQLite."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database or ""
    return Path(f"{database}.claim-lock") if database not in ("", ":memory:") else None
