"""Claims per second with 1, 4 and 16 worker processes on PostgreSQL and SQLite.

Each run queues a sweep of the no-op `synthetic` task (1 epoch), starts N real
`sweep worker --exit-when-idle` processes, and counts claims per second between
the first trial's start and the last trial's end (process start-up excluded).
Every claim line of every worker is checked: a trial handed out twice is a
double claim. Then the per-trial overhead ratio of benchmarks/overhead.py.

With --sweeps: claim latency (choosing the sweep and claiming one of its
trials, in this process) with 1, 10 and 100 active sweeps, and the ratio 100 vs
1; and on PostgreSQL the queries per second of 16 idle workers with 100
paused sweeps (transactions counted by pg_stat_database).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import optuna
import psycopg

from benchmarks import overhead
from benchmarks._common import (
    PG_ADMIN,
    create_sweep,
    fresh_database,
    start_worker,
)
from sweep.config import Settings
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.work import sweeps_by_share
from sweep.worker.loop import Worker

warnings.filterwarnings("ignore")
CLAIM = re.compile(r"claim sweep=claims trial=(\d+)")  # search trials, not claims.eval


def claims_per_second(
    kind: str, workers: int, trials: int, sampler: str = "tpe"
) -> tuple[float, int]:
    """(claims per second, double claims) for ``workers`` processes on a fresh database."""
    with fresh_database(kind) as url, tempfile.TemporaryDirectory() as logs:
        create_sweep(url, "claims", n_trials=trials, epochs=1, pruner="none", sampler=sampler)
        paths = [Path(logs) / f"w{i}.log" for i in range(workers)]
        procs = [start_worker(url, path, "--exit-when-idle") for path in paths]
        for proc in procs:
            proc.wait(timeout=600)
        claims = Counter(m.group(1) for p in paths for m in CLAIM.finditer(p.read_text()))
        doubles = sum(n - 1 for n in claims.values() if n > 1)
        study = optuna.load_study(study_name="claims", storage=url)
        done = [t for t in study.trials if t.datetime_start and t.datetime_complete]
        assert len(done) == trials, f"{len(done)} of {trials} trials finished"
        start = min(t.datetime_start for t in done if t.datetime_start)
        end = max(t.datetime_complete for t in done if t.datetime_complete)
        return trials / max((end - start).total_seconds(), 1e-9), doubles


def claim_latency_ms(kind: str, n_sweeps: int, claims: int = 40) -> tuple[float, float]:
    """Median milliseconds of (one worker's claim, choice of sweep included; the choice
    alone) with ``n_sweeps`` active sweeps."""
    with fresh_database(kind) as url:
        for i in range(n_sweeps):
            create_sweep(url, f"s{i}", n_trials=1000, epochs=1, pruner="none", sampler="random")
        factory = make_session_factory(make_engine(url))
        choices = []
        for _ in range(claims):
            started = time.perf_counter()
            sweeps_by_share(factory)
            choices.append(time.perf_counter() - started)
        # Leases long enough that no claimed trial (never run here) is reaped mid-measurement.
        settings = Settings(database_url=url, heartbeat_interval=60, grace_period=600)
        worker = Worker(settings, device="cpu")
        times = []
        for _ in range(claims + 5):
            started = time.perf_counter()
            assert worker._next_claim() is not None
            times.append(time.perf_counter() - started)
        worker.engine.dispose()
        return statistics.median(times[5:]) * 1000, statistics.median(choices) * 1000


def idle_queries_per_second(workers: int = 16, paused: int = 100, seconds: float = 10.0) -> float:
    """Transactions per second of ``workers`` idle worker processes with ``paused`` sweeps
    (PostgreSQL: every statement of an idle worker is its own transaction)."""
    with fresh_database("postgres") as url, tempfile.TemporaryDirectory() as logs:
        engine = make_engine(url)
        for i in range(paused):
            create_sweep(url, f"p{i}", n_trials=10, epochs=1)
            with transaction(make_session_factory(engine)) as session:
                sweeps.control_sweep(session, f"p{i}", "pause")
        engine.dispose()
        database = url.rsplit("/", 1)[1]
        procs = [start_worker(url, Path(logs) / f"w{i}.log") for i in range(workers)]
        try:
            deadline = time.monotonic() + 120  # start-up: imports and the schema check
            while time.monotonic() < deadline and not all(
                "started on" in (Path(logs) / f"w{i}.log").read_text() for i in range(workers)
            ):
                time.sleep(0.5)
            time.sleep(2)

            def committed() -> int:
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    row = admin.execute(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = %s",
                        (database,),
                    ).fetchone()
                    admin.execute("SELECT pg_stat_clear_snapshot()")
                assert row is not None
                return int(row[0])

            before = committed()
            time.sleep(seconds)
            return (committed() - before) / seconds
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)


def sweeps_column(kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        latency = {n: claim_latency_ms(kind, n) for n in (1, 10, 100)}
        for i, what in enumerate(("claim latency", "choice query")):
            print(
                f"{kind:<9} {what}: "
                + ", ".join(f"{n} sweeps {ms[i]:.1f} ms" for n, ms in latency.items())
                + f"  (100 vs 1: {latency[100][i] / latency[1][i]:.2f}x)"
            )
    if "postgres" in kinds:
        rate = idle_queries_per_second()
        print(f"postgres  16 idle workers, 100 paused sweeps, poll 0.1 s: {rate:.0f} queries/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sampler", default="tpe", help="the sampler runs under the claim lock")
    parser.add_argument("--no-overhead", action="store_true", help="skip the overhead ratio")
    parser.add_argument(
        "--sweeps", action="store_true", help="only claim latency by active sweeps and idle rate"
    )
    args = parser.parse_args()
    kinds = ("postgres", "sqlite") if args.backend == "both" else (args.backend,)
    if args.sweeps:
        sweeps_column(kinds)
        return
    for kind in kinds:
        base = None
        for n in args.workers:
            rate, doubles = claims_per_second(kind, n, args.trials, args.sampler)
            base = base or rate
            print(
                f"{kind:<9} {args.sampler:<6} {n:>2} workers: {rate:7.1f} claims/s"
                f"  ({rate / base:.2f}x of 1 worker)"
                f"  double claims: {doubles}"
            )
    for kind in () if args.no_overhead else kinds:
        overhead.measure(kind, trials=40, epochs=30)


if __name__ == "__main__":
    main()
