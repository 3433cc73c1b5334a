"""A short chaos run: PostgreSQL restarts, SIGKILLs and a SIGSTOP past the grace period.

Four workers and the API reach a private PostgreSQL cluster (never the shared
server) through PgBouncer in transaction mode; benchmarks/chaos.py is the long run.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks._clusters import PrivatePostgres
from benchmarks.chaos import run_chaos


def test_restarts_kills_and_stops_lose_nothing_and_fail_nothing_wrongly(
    private_postgres: PrivatePostgres, pgbouncer_binary: str, tmp_path: Path
) -> None:
    report = run_chaos(
        private_postgres,
        tmp_path,
        restarts=2,
        kills=2,
        stops=1,
        n_trials=16,
        epochs=4,
        grace=5,
        finish_within_s=120,  # a cap: about 50 s on an idle 2-core machine
        pgbouncer_binary=pgbouncer_binary,
    )
    assert report.events == {"restart": 2, "kill": 2, "stop": 1}, report.lines()
    assert report.problems() == [], report.lines()
    assert report.lost == 0 and report.over_run == 0 and not report.wrongly_failed
    assert report.api_5xx == 0 and report.budget_exact
    assert report.failed >= 1  # the kills and the stop did hit trials, each then retried
