"""Engines, sessions and transactions, and telling a database outage from a bug."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, FunctionElement, Table, TableClause, create_engine, event
from sqlalchemy import func as sql
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from sweep.config import Settings

SQLITE_BUSY_TIMEOUT_S = 30
T = TypeVar("T")
log = logging.getLogger("sweep.db")


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names an SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


@dataclass(frozen=True)
class Pooling:
    """How an engine holds connections: how many, how long a query waits for one, and
    whether a transaction pooler (PgBouncer) in front of PostgreSQL is the pool instead."""

    size: int = 5
    overflow: int = 5
    timeout_s: float = 30.0
    transaction_pooler: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Pooling:
        """What the settings ask for (``SWEEP_DB_POOL_SIZE``, ``SWEEP_TRANSACTION_POOLER``, …)."""
        return cls(
            settings.db_pool_size,
            settings.db_max_overflow,
            settings.db_pool_timeout,
            settings.transaction_pooler,
        )


def engine_options(url: str, pool: Pooling = Pooling()) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` (ours and Optuna's) suited to the dialect.

    Behind a transaction pooler consecutive transactions may reach different server
    connections, where psycopg's prepared statements do not exist: so NullPool, and
    ``prepare_threshold=None``.
    """
    if is_sqlite(url):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if pool.transaction_pooler:
        return {"poolclass": NullPool, "connect_args": {"prepare_threshold": None}}
    # A database restart then costs a reconnect, not a crashed worker.
    return {
        "pool_pre_ping": True,
        "pool_size": pool.size,
        "max_overflow": pool.overflow,
        "pool_timeout": pool.timeout_s,
    }


def make_engine(url: str, pool: Pooling = Pooling()) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode and a busy timeout."""
    engine = create_engine(url, **engine_options(url, pool))
    tune_sqlite(engine)
    return engine


def behind_transaction_pooler(engine: Engine) -> bool:
    """Whether ``engine`` was made for a transaction pooler (see ``engine_options``)."""
    return engine.dialect.name != "sqlite" and isinstance(engine.pool, NullPool)


def tune_sqlite(engine: Engine) -> None:
    """Give every new SQLite connection of ``engine`` WAL mode and a busy timeout.

    In WAL mode ``synchronous=NORMAL`` is what SQLite recommends: a crash of the
    process loses nothing; only a power loss can drop the last commits.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    engine.dispose()  # connections opened before the listener was attached get it too


def upsert(conn: Connection, table: Table | TableClause) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that can take ``on_conflict_do_update`` (both dialects have it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def statement_time(conn: Connection) -> FunctionElement[Any]:
    """The database clock when the statement runs (PostgreSQL's now() is when the transaction
    began, which may be long before, behind a lock)."""
    if conn.dialect.name == "postgresql":
        return sql.statement_timestamp()
    return sql.current_timestamp()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session, commit if the block succeeds, roll back if it raises."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) means the database could not be reached.

    Optuna wraps driver errors in StorageInternalError, so the cause chain is searched.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OperationalError | InterfaceError):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_on_outage(call: Callable[[], T], *, max_wait_s: float, what: str) -> T:
    """Run ``call``; while the database is unreachable, retry with backoff for ``max_wait_s``."""
    delay = 0.2
    deadline = time.monotonic() + max_wait_s
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_outage(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable during %s; retrying in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
