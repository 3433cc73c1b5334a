"""Concurrent clients against the read routes of a real `sweep api` while a worker trains.

For each level of concurrency (1, 8, 32, 128, 256 clients by default), every
client loops over /v1/sweeps/{name}, /top, /trials, /best, /v1/sweeps,
/metrics and /healthz for ``--seconds``. Printed per level: responses/s,
errors, timeouts and 503s (the API's answer past its bound), then p50/p95/p99
per route. Targets: 0 errors and 0 timeouts at every level, 503s only
above SWEEP_DB_POOL_SIZE + SWEEP_DB_MAX_OVERFLOW clients per process, /best
p95 <= 100 ms at 32 clients.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks._common import create_sweep, fresh_database, start_worker

ROUTES = {
    "/sweeps/{name}": "/v1/sweeps/load",
    "/top": "/v1/sweeps/load/top",
    "/trials": "/v1/sweeps/load/trials",
    "/best": "/v1/sweeps/load/best",
    "/sweeps": "/v1/sweeps",
    "/metrics": "/metrics",
    "/healthz": "/healthz",
}
TIMEOUT_S = 10.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else 0.0


def run_level(base_url: str, clients: int, seconds: float) -> None:
    """``clients`` threads for ``seconds``; prints one level's figures."""
    lock = threading.Lock()
    latencies: dict[str, list[float]] = defaultdict(list)
    outcomes: Counter[str] = Counter()

    def client_loop(number: int) -> None:
        end = time.monotonic() + seconds
        labels = list(ROUTES)
        i = number
        with httpx.Client(base_url=base_url, timeout=TIMEOUT_S) as client:
            while time.monotonic() < end:
                label = labels[i % len(labels)]
                i += 1
                sent = time.perf_counter()
                try:
                    status = client.get(ROUTES[label]).status_code
                except httpx.TimeoutException:
                    outcome = "timeout"
                except httpx.TransportError:
                    outcome = "error"
                else:
                    outcome = {200: "200", 503: "503"}.get(status, "error")
                elapsed = time.perf_counter() - sent
                with lock:
                    outcomes[outcome] += 1
                    if outcome == "200":
                        latencies[label].append(elapsed)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    wall = time.monotonic() - started
    total = sum(outcomes.values())
    print(
        f"{clients:>4} clients: {total / wall:6.1f} responses/s, 200: {outcomes['200']}, "
        f"503: {outcomes['503']}, errors: {outcomes['error']}, timeouts: {outcomes['timeout']}"
    )
    for label in ROUTES:
        samples = latencies[label]
        print(
            f"       {label:<15} p50 {percentile(samples, 0.50):7.1f} ms  "
            f"p95 {percentile(samples, 0.95):7.1f} ms  p99 {percentile(samples, 0.99):7.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,8,32,128,256", help="levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="per level")
    parser.add_argument("--workers", type=int, default=1, help="sweep api --workers")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with fresh_database(args.database) as url, tempfile.TemporaryDirectory() as logs:
        create_sweep(url, "load", n_trials=10_000, epochs=20)
        env = {**os.environ, "SWEEP_DATABASE_URL": url, "SWEEP_AUTH": "false"}
        api = subprocess.Popen(
            [sys.executable, "-m", "sweep", "api", "--port", str(args.port),
             "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        worker = start_worker(url, Path(logs) / "worker.log")
        try:
            base_url = f"http://127.0.0.1:{args.port}"
            with httpx.Client(base_url=base_url, timeout=5) as probe:
                deadline = time.monotonic() + 120
                while True:  # ready, and a trial has completed so that /best answers 200
                    try:
                        if probe.get(ROUTES["/best"]).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("the API did not answer /best within 120 s")
                    time.sleep(0.3)
            print(f"sweep api --workers {args.workers} on {args.database}, a worker training")
            for clients in (int(c) for c in args.clients.split(",")):
                run_level(base_url, clients, args.seconds)
        finally:
            for proc in (worker, api):
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
