"""The API and two workers through a real PgBouncer in transaction mode: claims, a kill, a retry.

PgBouncer (the Debian package) is installed by this set-up when it is missing and
the tests run as root; it listens on a free port in front of the test's database.
SWEEP_TRANSACTION_POOLER makes sweep use NullPool and no prepared statements,
without which psycopg's prepared statements break behind a transaction pooler.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import optuna
import psycopg
import pytest
from optuna.trial import TrialState
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks._clusters import pgbouncer
from sweep.config import Settings
from sweep.store.engine import Pooling, make_engine, make_session_factory
from sweep.store.locks import locked_sweep
from tests.conftest import PG_ADMIN_URL, drop_pg_database, new_pg_database
from tests.e2e.conftest import wait_for
from tests.helpers import make_sweep

POOL_SIZE = 4  # server connections PgBouncer may open to the database


def _server_connections(database: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def bouncer(pg_template: str, pgbouncer_binary: str) -> Iterator[tuple[str, str]]:
    """(URL through PgBouncer, database name): a fresh copy of the migrated template."""
    direct = new_pg_database(pg_template)
    database = direct.rsplit("/", 1)[1]
    try:
        with pgbouncer(pgbouncer_binary, database, 5432, POOL_SIZE) as (url, _):
            yield url, database
    finally:
        drop_pg_database(direct)


def test_api_and_two_workers_through_pgbouncer_survive_a_kill(processes, bouncer) -> None:  # type: ignore[no-untyped-def]
    url, database = bouncer
    procs = processes(url)
    procs.env["SWEEP_TRANSACTION_POOLER"] = "true"
    upgraded = procs.run("db", "upgrade")  # migrations through the pooler, too
    assert upgraded.returncode == 0, upgraded.stderr
    api: httpx.Client = procs.api()
    created = api.post(
        "/v1/sweeps",
        json={
            "name": "pooled",
            "task": "synthetic",
            "n_trials": 4,
            "epochs": 4,
            "task_options": {"epoch_seconds": 0.25},
            "pruner": "none",
            "baseline": False,
            "reevaluate_top": 0,
        },
    )
    assert created.status_code == 201, created.text
    victim = procs.start("worker", "--device", "cpu", name="victim")
    procs.start("worker", "--device", "cpu", name="survivor")
    storage = url

    def running() -> int:
        study = optuna.load_study(study_name="pooled", storage=storage)
        return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    wait_for(lambda: running() == 2, 60, "both workers training")
    peak = _server_connections(database)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    def completed() -> bool:
        response = api.get("/v1/sweeps/pooled")
        return response.status_code == 200 and response.json()["status"] == "completed"

    wait_for(completed, 90, "the survivor to finish the sweep, the killed trial's retry too")
    trials = optuna.load_study(study_name="pooled", storage=storage).get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == 1, states  # the killed worker's trial …
    assert states.count(TrialState.COMPLETE) == 4, states  # … retried: 4 configurations, exact
    for log in ("api", "survivor"):
        assert "prepared statement" not in procs.log(log), procs.log(log)
    # PgBouncer's pool, not the number of client processes, bounds server connections.
    assert peak <= POOL_SIZE, peak


def test_workers_waiting_for_the_sweep_lock_leave_the_holder_a_server_connection(
    pg_template: str, pgbouncer_binary: str
) -> None:
    direct = new_pg_database(pg_template)
    database = direct.rsplit("/", 1)[1]
    try:
        # Two server connections: the lock holder's, and one for its Optuna write.
        with pgbouncer(pgbouncer_binary, database, 5432, 2) as (url, _):
            settings = Settings(database_url=url, transaction_pooler=True)
            factory = make_session_factory(make_engine(url, Pooling.of(settings)))
            sweep_id = make_sweep(settings, factory, "locked", baseline=False)
            other = make_engine(url, Pooling.of(settings))  # Optuna's own engine, say
            waiters = [
                threading.Thread(target=_lock_once, args=(factory, sweep_id), daemon=True)
                for _ in range(3)
            ]
            with locked_sweep(factory, sweep_id):
                for waiter in waiters:
                    waiter.start()
                time.sleep(1)  # they wait for the lock now
                wrote = threading.Thread(target=_one_transaction, args=(other,), daemon=True)
                wrote.start()
                wrote.join(timeout=15)
                assert not wrote.is_alive(), "the lock holder got no server connection"
            for waiter in waiters:
                waiter.join(timeout=15)
                assert not waiter.is_alive()
            other.dispose()
    finally:
        drop_pg_database(direct)


def _lock_once(factory: sessionmaker[Session], sweep_id: int) -> None:
    with locked_sweep(factory, sweep_id):
        pass


def _one_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM sweeps"))
