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


LOAD_CLIENTS = 32
LOAD_SECONDS = 5.0
LOAD_PATHS = (*READ_PATHS, "/v1/sweeps/load/best", "/metrics", "/healthz")


def test_32_clients_for_5_seconds_all_get_200_while_a_worker_trains(
    processes,
    settings: Settings,  # type: ignore[no-untyped-def]
) -> None:
    procs: Processes = processes(settings.database_url)
    # A wider queue bound than the 1 s default: CI's two cores also run the worker and the
    # 32 client threads, and this test is about stalls and errors, not the bound itself.
    procs.env["SWEEP_QUEUE_TIMEOUT"] = "3"
    api = procs.api()
    created = api.post(
        "/v1/sweeps", json={"name": "load", "task": "synthetic", "n_trials": 500, "epochs": 20}
    )
    assert created.status_code == 201, created.text
    procs.start("worker", "--device", "cpu", name="worker")
    deadline = time.monotonic() + 60
    while api.get("/v1/sweeps/load/best").status_code != 200:  # a trial has completed
        assert time.monotonic() < deadline, procs.log("worker")
        time.sleep(0.3)
    headers = dict(api.headers)

    def read_until_time_is_up(client_number: int) -> tuple[Counter[int], float]:
        statuses: Counter[int] = Counter()
        slowest = 0.0
        end = time.monotonic() + LOAD_SECONDS
        with httpx.Client(base_url=str(api.base_url), headers=headers, timeout=5) as client:
            while time.monotonic() < end:
                path = LOAD_PATHS[sum(statuses.values()) % len(LOAD_PATHS)]
                sent = time.monotonic()
                statuses[client.get(path).status_code] += 1  # a hang past 5 s fails the test
                slowest = max(slowest, time.monotonic() - sent)
        return statuses, slowest

    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        per_client = list(pool.map(read_until_time_is_up, range(LOAD_CLIENTS)))
    statuses = sum((s for s, _ in per_client), Counter[int]())
    slowest = max(t for _, t in per_client)
    print(f"{sum(statuses.values())} responses in {LOAD_SECONDS:.0f} s: {dict(statuses)}; "
          f"slowest {slowest:.2f} s")  # fmt: skip
    assert set(statuses) == {200}, procs.log("api")
    trials = api.get("/v1/sweeps/load").json()["trials"]
    assert trials.get("RUNNING", 0) + trials.get("COMPLETE", 0) > 1  # the worker kept training
