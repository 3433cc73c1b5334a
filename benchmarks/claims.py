"""Claims per second with 1, 4 and 16 worker processes on PostgreSQL and SQLite.

Each run queues a sweep of the no-op `synthetic` task (1 epoch), starts N real
`sweep worker --exit-when-idle` processes, and counts claims per second between
the first trial's start and the last trial's end (process start-up excluded).
Every claim line of every worker is checked: a trial handed out twice is a
double claim. Then the per-trial overhead ratio of benchmarks/overhead.py.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import optuna

from benchmarks import overhead
from benchmarks._common import create_sweep, fresh_database, start_worker

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sampler", default="tpe", help="the sampler runs under the claim lock")
    parser.add_argument("--no-overhead", action="store_true", help="skip the overhead ratio")
    args = parser.parse_args()
    kinds = ("postgres", "sqlite") if args.backend == "both" else (args.backend,)
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
