"""Shared set-up for the benchmarks: fresh databases, sweeps and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from sweep.config import Settings
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.migrations import upgrade
from sweep.store.optuna_storage import storage_for

PG_ADMIN = os.environ.get("SWEEP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_PREFIX = "postgresql+psycopg://" + PG_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]


@contextmanager
def fresh_database(kind: str, migrate: bool = True) -> Iterator[str]:
    """A new SQLite file or PostgreSQL database (dropped afterwards); yields its URL."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            if migrate:
                upgrade(make_engine(url))
            yield url
        return
    name = f"sweep_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_PREFIX}/{name}"
    try:
        if migrate:
            upgrade(make_engine(url))
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(url: str) -> Settings:
    return Settings(
        database_url=url,
        heartbeat_interval=1,
        grace_period=3,
        reap_interval=1,
        poll_interval=0.1,
        max_poll_interval=1.0,
    )


def create_sweep(url: str, name: str, **fields: object) -> None:
    spec = sweeps.SweepSpec.model_validate({"name": name, "task": "synthetic", **fields})
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        sweeps.create_sweep(session, storage_for(bench_settings(url)), spec)
    engine.dispose()


def start_worker(url: str, log: Path, *extra: str, device: str = "cpu") -> subprocess.Popen[bytes]:
    """A real `sweep worker` process (on the CPU by default) with short leases."""
    env = {
        **os.environ,
        "SWEEP_DATABASE_URL": url,
        "SWEEP_HEARTBEAT_INTERVAL": "1",
        "SWEEP_GRACE_PERIOD": "3",
        "SWEEP_POLL_INTERVAL": "0.1",
        "SWEEP_MAX_POLL_INTERVAL": "1",
        "OMP_NUM_THREADS": "1",
    }
    out = open(log, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", "worker", "--device", device, *extra],
        env=env,
        stdout=out,
        stderr=out,
    )
