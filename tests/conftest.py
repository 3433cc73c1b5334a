"""Real databases for the tests: an SQLite file, and PostgreSQL at 127.0.0.1:5432.

Each PostgreSQL test gets a fresh database copied from a migrated template.
Under CI=true a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from sweep.config import Settings
from sweep.service.tokens import create_token
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.migrations import upgrade

PG_ADMIN_URL = os.environ.get("SWEEP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_SQLALCHEMY_PREFIX = "postgresql+psycopg://" + PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that per-test databases are copied from."""
    name = f"sweep_tpl_{uuid.uuid4().hex[:8]}"
    try:
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    engine = make_engine(f"{PG_SQLALCHEMY_PREFIX}/{name}")
    upgrade(engine)
    engine.dispose()
    yield name
    with _pg_admin() as admin:  # a new connection: a test may have restarted the server
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_pg_database(template: str | None = None) -> str:
    """Create a database (a copy of ``template`` if given) and return its SQLAlchemy URL."""
    name = f"sweep_test_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as admin:
        suffix = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{suffix}')
    return f"{PG_SQLALCHEMY_PREFIX}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread, for modules that train in process: as fast as two, and not slowed
    by a busy machine."""
    # on a busy 2-core machine: 247 s with torch's default 2 threads, 27 s with one (measured)
    import torch  # here, not at the top: most tests never train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sweep.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    url = new_pg_database(request.getfixturevalue("pg_template"))
    yield url
    drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty (unmigrated) database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("pg_template")  # skips (or fails in CI) without PostgreSQL
    url = new_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file (for tests where the dialect does not matter)."""
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def fast_settings(url: str) -> Settings:
    """Settings with short leases, so fault tests finish quickly."""
    return Settings(
        database_url=url,
        heartbeat_interval=1,
        grace_period=3,
        reap_interval=1,
        poll_interval=0.2,
        max_poll_interval=1.0,
    )


@pytest.fixture
def settings(db_url: str) -> Settings:
    return fast_settings(db_url)


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def issue_token(url: str, role: str = "admin", **options: object) -> str:
    """A new token of ``role`` in the database at ``url``; its secret."""
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        issued = create_token(session, role, **options)  # type: ignore[arg-type]
    engine.dispose()
    return issued.secret


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The API, in process, on the test's database, calling with an admin token."""
    headers = {"Authorization": f"Bearer {issue_token(settings.database_url)}"}
    with TestClient(create_app(settings), headers=headers) as test_client:
        yield test_client
