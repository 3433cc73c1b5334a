"""Claims per second with 1, 4 and 16 worker processes on PostgreSQL and SQLite.

Each run queues a sweep of the no-op `synthetic` task (1 epoch), starts N real
`sweep worker --exit-when-idle` processes, and counts claims per second between
the first trial's start and the last trial's end (process start-up excluded).
Every claim line of every worker is checked: a trial handed out twice is a
double claim. Then the per-trial overhead ratio of benchmarks/overhead.py.

With --cycle: the CPU one claim-and-finish cycle costs (an in-process worker
running no-op trials one after another, so no lock waits): the worker process's
own CPU, the CPU of the PostgreSQL backends serving its connections (read from
/proc: the server must run on this machine), and SQL statements per cycle.

With --sweeps: claim latency (choosing the sweep and claiming one of its
trials, in this process) with 1, 10 and 100 active sweeps, and the ratio 100 vs
1; and on PostgreSQL the queries per second of 16 idle workers with 100
paused sweeps (transactions counted by pg_stat_database).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import psycopg
from sqlalchemy import Engine, event

from benchmarks import overhead
from benchmarks._common import (
    PG_ADMIN,
    bench_settings,
    create_sweep,
    fresh_database,
    start_worker,
)
from sweep.config import Settings
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.optuna_storage import storage_for
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


def cycle_cost(kind: str, trials: int, sampler: str = "tpe") -> tuple[float, float, float]:
    """(worker CPU ms, database server CPU ms, SQL statements) per claim-and-finish cycle."""
    statements = 0
    backends: set[int] = set()

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    def remember_backend(dbapi_conn: Any, _record: object) -> None:
        if kind == "postgres":
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends.add(int(cursor.fetchone()[0]))

    with fresh_database(kind) as url:
        create_sweep(
            url,
            "cycle",
            n_trials=trials,
            epochs=1,
            pruner="none",
            sampler=sampler,
            baseline=False,
            reevaluate_top=0,
        )
        storage_for(bench_settings(url)).engine.dispose()  # reconnects, now counted
        event.listen(Engine, "connect", remember_backend)
        event.listen(Engine, "before_cursor_execute", count)
        try:
            worker = Worker(bench_settings(url), device="cpu", exit_when_idle=True)
            statements = 0
            server_before = _server_cpu_s(backends)
            started = time.process_time()
            worker.run()
            own = time.process_time() - started
            server = _server_cpu_s(backends) - server_before
        finally:
            event.remove(Engine, "before_cursor_execute", count)
            event.remove(Engine, "connect", remember_backend)
        assert worker.trials_run == trials
        return own / trials * 1000, server / trials * 1000, statements / trials


def _server_cpu_s(pids: set[int]) -> float:
    """User + system CPU seconds of these server processes so far (still alive or not)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def claim_latency_ms(kind: str, n_sweeps: int, claims: int = 40) -> tuple[float, float, float]:
    """Median milliseconds of (one worker's claim, choice of sweep included; the worker's
    CPU for it, which a busy machine inflates less; the choice alone) with ``n_sweeps``
    active sweeps."""
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
        times, cpu = [], []
        for _ in range(claims + 5):
            started, cpu_started = time.perf_counter(), time.process_time()
            assert worker._next_claim() is not None
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        worker.engine.dispose()
        wall, own, choice = (statistics.median(t) * 1000 for t in (times[5:], cpu[5:], choices))
        return wall, own, choice


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
        for i, what in enumerate(("claim latency", "claim CPU", "choice query")):
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
    parser.add_argument(
        "--cycle", action="store_true", help="only the CPU and statements per claim-and-finish"
    )
    args = parser.parse_args()
    kinds = ("postgres", "sqlite") if args.backend == "both" else (args.backend,)
    if args.cycle:
        for kind in kinds:
            own, server, statements = cycle_cost(kind, min(args.trials, 150), args.sampler)
            print(
                f"{kind:<9} {args.sampler:<6} claim-and-finish cycle: worker CPU {own:.1f} ms"
                f" + database server CPU {server:.1f} ms, {statements:.1f} SQL statements"
            )
        return
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
