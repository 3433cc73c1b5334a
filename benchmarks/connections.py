"""A fleet of workers on one PostgreSQL: server connections, with and without PgBouncer,
and the query rate of the fleet once it is idle.

N `sweep worker` processes (64 by default, the `synthetic` task, the default poll
and heartbeat settings) run against a private PostgreSQL cluster, first directly,
then through PgBouncer in transaction mode (SWEEP_TRANSACTION_POOLER=true). For each:

  claiming   a sweep with more trials than workers; the peak and median of the
             client connections the server holds for the database (pg_stat_activity,
             sampled every 0.5 s) while the workers claim and train
  idle       once the sweep has completed: transactions per second the server
             commits for the database (pg_stat_database) over a window, after the
             workers' idle backoff has reached its longest wait

`python -m benchmarks.connections [--workers 64] [--idle-seconds 60]`
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._clusters import PrivatePostgres, pgbouncer, pgbouncer_binary, private_postgres
from benchmarks._common import create_sweep
from sweep.config import Settings
from sweep.store.engine import make_engine
from sweep.store.migrations import upgrade

POOL_SIZE = 20  # PgBouncer's server connections for the database


@dataclass(frozen=True)
class FleetFigures:
    """What one fleet cost the server."""

    peak_connections: int
    median_connections: float
    trials_per_s: float
    idle_xact_per_s: float


def _start(n: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        log = open(logs / f"worker-{i}.log", "wb")  # noqa: SIM115 - lives with the process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sweep", "worker", "--device", "cpu"],
                env=env,
                stdout=log,
                stderr=log,
            )
        )
    return procs


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _sweep_done(pg: PrivatePostgres, database: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(pg.url(database).replace("+psycopg", ""), autocommit=True) as conn:
        row = conn.execute("SELECT status FROM sweeps WHERE name = %s", (name,)).fetchone()
    return row is not None and row[0] == "completed"


def measure_fleet(
    pg: PrivatePostgres, *, workers: int, pooled: bool, trials: int, idle_s: float, logs: Path
) -> FleetFigures:
    """Run ``workers`` workers (through PgBouncer if ``pooled``) on a fresh database."""
    database = f"fleet_{'pooled' if pooled else 'direct'}"
    direct = pg.create_database(database)
    engine = make_engine(direct)
    upgrade(engine)
    engine.dispose()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in [k for k in env if k.startswith("SWEEP_")]:
        del env[key]  # the defaults: what a deployment runs with
    with pgbouncer(pgbouncer_binary() or "pgbouncer", database, pg.port, POOL_SIZE) as (url, _):
        env["SWEEP_DATABASE_URL"] = url if pooled else direct
        if pooled:
            env["SWEEP_TRANSACTION_POOLER"] = "true"
        procs = _start(workers, env, logs)
        samples: list[int] = [0]
        trials_per_s = 0.0
        try:
            if trials:
                trials_per_s = _claim_all(pg, database, direct, trials, samples)
            while not all("started on" in _read(logs / f"worker-{i}.log") for i in range(workers)):
                time.sleep(1)  # 64 processes importing on 2 cores take minutes
            # Idle: the backoff doubles from 1 s up to 30 s (with jitter); then a window.
            time.sleep(Settings(database_url=direct).max_poll_interval * 1.5)
            before, at = pg.transactions(database), time.monotonic()
            time.sleep(idle_s)
            idle_rate = (pg.transactions(database) - before) / (time.monotonic() - at)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=120)
    return FleetFigures(max(samples), statistics.median(samples), trials_per_s, idle_rate)


def _claim_all(
    pg: PrivatePostgres, database: str, direct: str, trials: int, samples: list[int]
) -> float:
    """Run a sweep of ``trials`` to the end, sampling server connections; trials per second."""
    create_sweep(
        direct,
        "fleet",
        n_trials=trials,
        epochs=3,
        pruner="none",
        baseline=False,
        reevaluate_top=0,
        task_options={"epoch_seconds": 1.0},
    )
    started = time.monotonic()
    while not _sweep_done(pg, database, "fleet"):
        samples.append(pg.server_connections(database))
        time.sleep(0.5)
    return trials / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--trials", type=int, default=192, help="0: idle only")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--only", choices=("direct", "pooled"), help="one of the two fleets")
    args = parser.parse_args()
    modes = [m for m in (False, True) if args.only in (None, "pooled" if m else "direct")]
    with tempfile.TemporaryDirectory() as logs, private_postgres(max_connections=500) as pg:
        for pooled in modes:
            figures = measure_fleet(
                pg,
                workers=args.workers,
                pooled=pooled,
                trials=args.trials,
                idle_s=args.idle_seconds,
                logs=Path(logs),
            )
            how = f"through PgBouncer (pool {POOL_SIZE})" if pooled else "direct"
            print(
                f"{args.workers} workers {how}: server connections while claiming "
                f"peak {figures.peak_connections}, median {figures.median_connections:.0f}; "
                f"{figures.trials_per_s:.1f} trials/s; idle: "
                f"{figures.idle_xact_per_s:.2f} transactions/s in all "
                f"({figures.idle_xact_per_s / args.workers:.3f} per worker)",
                flush=True,
            )


if __name__ == "__main__":
    main()
