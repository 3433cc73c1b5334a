"""`sweep api` under more concurrent requests than its database pool: answers, never a stall."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from sweep.config import Settings
from tests.e2e.conftest import Processes

READ_PATHS = ("/v1/sweeps/load", "/v1/sweeps/load/top", "/v1/sweeps/load/trials", "/v1/sweeps")
CLIENTS = 24
ROUNDS = 8


def test_a_burst_beyond_the_pool_gets_200_or_503_with_retry_after(
    processes,
    settings: Settings,  # type: ignore[no-untyped-def]
) -> None:
    procs: Processes = processes(settings.database_url)
    # One request at a time, and a short wait for it, so that the burst meets both answers.
    procs.env.update(SWEEP_DB_POOL_SIZE="1", SWEEP_DB_MAX_OVERFLOW="0", SWEEP_QUEUE_TIMEOUT="0.1")
    api = procs.api()
    created = api.post("/v1/sweeps", json={"name": "load", "task": "synthetic", "n_trials": 2})
    assert created.status_code == 201, created.text
    headers = dict(api.headers)

    def read_in_a_loop(client_number: int) -> list[tuple[int, str | None]]:
        answers = []
        with httpx.Client(base_url=str(api.base_url), headers=headers, timeout=5) as client:
            for round_number in range(ROUNDS):
                path = READ_PATHS[(client_number + round_number) % len(READ_PATHS)]
                response = client.get(path)  # a hang past 5 s raises and fails the test
                answers.append((response.status_code, response.headers.get("Retry-After")))
        return answers

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for batch in pool.map(read_in_a_loop, range(CLIENTS)) for a in batch]
    elapsed = time.monotonic() - started

    statuses = Counter(status for status, _ in answers)
    print(f"{len(answers)} responses in {elapsed:.1f} s: {dict(statuses)}")
    assert set(statuses) <= {200, 503}, procs.log("api")
    assert statuses[200] > 0
    assert all(retry == "1" for status, retry in answers if status == 503)
    assert elapsed < 30
    assert "Traceback" not in procs.log("api")


def test_api_workers_serve_from_separate_processes(processes, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(sqlite_url)
    api = procs.api("--workers", "2")
    created = api.post("/v1/sweeps", json={"name": "load", "task": "synthetic", "n_trials": 2})
    assert created.status_code == 201, created.text
    assert all(api.get("/v1/sweeps/load").status_code == 200 for _ in range(20))
    assert "2 process(es)" in procs.log("api")
