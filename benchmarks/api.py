"""Latency of /best, /top and /trials with 10,000 trials × 20 epochs in PostgreSQL.

Builds the database in the run (one sweep, its study filled with finished
trials), starts a real `sweep api` (uvicorn) and times each route from a
client on the same machine. The baseline, in the same run, is what a plain
Optuna-backed endpoint would do: load the study and take `best_trial` /
sort `trials`. Targets: /best and /top p95 ≤ 20 ms, /trials p95 ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import optuna
from optuna.distributions import distribution_to_json
from sqlalchemy import MetaData, func, insert, select, text

from benchmarks._common import create_sweep, fresh_database
from sweep.definition.space import Space
from sweep.store.engine import make_engine

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)


def fill(url: str, name: str, trials: int, epochs: int) -> None:
    """Insert ``trials`` finished trials with ``epochs`` intermediate values each.

    Rows go straight into Optuna's tables in bulk (one trial at a time through
    Optuna would take a quarter of an hour); the API then reads them as usual.
    """
    engine = make_engine(url)
    meta = MetaData()
    meta.reflect(
        engine,
        only=[
            "studies",
            "trials",
            "trial_values",
            "trial_params",
            "trial_intermediate_values",
            "trial_user_attributes",
        ],
    )
    t = meta.tables
    dists = {k: distribution_to_json(d) for k, d in Space().distributions().items()}
    rng = random.Random(0)
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        study_id = conn.execute(
            select(t["studies"].c.study_id).where(t["studies"].c.study_name == name)
        ).scalar_one()
        first = (conn.execute(select(func.max(t["trials"].c.trial_id))).scalar() or 0) + 1
        rows: dict[str, list[dict[str, object]]] = {k: [] for k in t}
        for i in range(trials):
            trial_id = first + i
            curve = [1.0 / (e + 1) + rng.random() for e in range(epochs)]
            rows["trials"].append(
                {
                    "trial_id": trial_id,
                    "number": i,
                    "study_id": study_id,
                    "state": "COMPLETE",
                    "datetime_start": now,
                    "datetime_complete": now,
                }
            )
            rows["trial_values"].append(
                {
                    "trial_id": trial_id,
                    "objective": 0,
                    "value": min(curve),
                    "value_type": "FINITE",
                }
            )
            params = {"dropout": rng.uniform(0.2, 0.5), "weight_decay": 10 ** rng.uniform(-5, -2)}
            rows["trial_params"] += [
                {
                    "trial_id": trial_id,
                    "param_name": k,
                    "param_value": v,
                    "distribution_json": dists[k],
                }
                for k, v in params.items()
            ]
            rows["trial_intermediate_values"] += [
                {
                    "trial_id": trial_id,
                    "step": e,
                    "intermediate_value": v,
                    "intermediate_value_type": "FINITE",
                }
                for e, v in enumerate(curve)
            ]
            attrs = {"metrics": {"epoch": 3}, "worker": "bench:1:cpu", "attempt": 1}
            rows["trial_user_attributes"] += [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                for k, v in attrs.items()
            ]
        for table in (
            "trials",
            "trial_values",
            "trial_params",
            "trial_intermediate_values",
            "trial_user_attributes",
        ):
            conn.execute(insert(t[table]), rows[table])
    if engine.dialect.name == "postgresql":  # as autovacuum would after trials trickle in
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1e3, q[94] * 1e3, q[98] * 1e3


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    call()  # warm-up
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with fresh_database("postgres") as url:
        create_sweep(url, "big", n_trials=args.trials, epochs=args.epochs)
        fill(url, "big", args.trials, args.epochs)
        env = {**os.environ, "SWEEP_DATABASE_URL": url}
        api = subprocess.Popen(
            [sys.executable, "-m", "sweep", "api", "--port", str(args.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30)
            for _ in range(100):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            routes = {
                "/best": "/v1/sweeps/big/best",
                "/top?k=5": "/v1/sweeps/big/top?k=5",
                "/trials (50)": "/v1/sweeps/big/trials?limit=50&cursor=5000",
            }
            targets = {"/best": 20, "/top?k=5": 20, "/trials (50)": 50}
            for label, path in routes.items():
                samples = time_calls(lambda p=path: client.get(p).raise_for_status(), args.requests)
                p50, p95, p99 = percentiles(samples)
                verdict = "ok" if p95 <= targets[label] else "MISSED"
                print(
                    f"{label:<14} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms"
                    f"   (target p95 <= {targets[label]} ms: {verdict})"
                )
            study = optuna.load_study(study_name="big", storage=url)
            naive_ms = statistics.median(time_calls(lambda: study.best_trial, 5)) * 1e3
            best_p50 = percentiles(time_calls(lambda: client.get(routes["/best"]), 50))[0]
            print(
                f"baseline: plain Optuna best_trial on the same study {naive_ms:.0f} ms;"
                f" /best p50 is {naive_ms / best_p50:.0f}x faster"
            )
        finally:
            api.terminate()
            api.wait(timeout=30)


if __name__ == "__main__":
    main()
