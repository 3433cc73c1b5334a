"""/metrics in Prometheus text format, after real sweeps, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime

import optuna
from fastapi.testclient import TestClient
from optuna.trial import TrialState
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from api.app import create_app
from sweep.config import Settings
from sweep.metrics import worker_registry
from sweep.scheduler.claims import claim_trial
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.optuna_storage import storage_for
from sweep.worker.loop import Worker
from tests.helpers import create

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text_format: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text_format)
        for s in family.samples
    }


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_trial_counts_after_a_real_sweep_match_the_study(
    client: TestClient, settings: Settings
) -> None:
    create(client, "counted", n_trials=7)
    create(client, "waiting", n_trials=2)
    client.post("/v1/sweeps/waiting/pause")
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0

    samples = scrape(client)
    study = optuna.load_study(study_name="counted", storage=settings.database_url)
    by_state: dict[str, int] = {}
    for trial in study.trials:
        by_state[trial.state.name] = by_state.get(trial.state.name, 0) + 1
    assert sum(by_state.values()) == 7
    for state, n in by_state.items():
        assert value(samples, "sweep_trials", sweep="counted", state=state) == n
    assert value(samples, "sweep_trials_completed_total", sweep="counted") == by_state["COMPLETE"]
    assert value(samples, "sweep_workers_alive", sweep="counted") == 0  # the worker has exited
    assert value(samples, "sweep_database_up") == 1
    # a paused sweep has no trials yet, so it has no series
    assert not any(labels and ("sweep", "waiting") in labels for _, labels in samples)


def test_workers_alive_counts_fresh_heartbeats_only(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    spec = sweeps.SweepSpec.model_validate({"name": "alive", "task": "synthetic", "n_trials": 3})
    with transaction(factory) as session:
        sweep_id = sweeps.create_sweep(session, storage_for(settings), spec).id
    claims = [claim_trial(settings, factory, sweep_id, f"w{i}") for i in range(2)]
    assert all(claims)

    with TestClient(create_app(settings)) as client:
        assert value(scrape(client), "sweep_workers_alive", sweep="alive") == 2
        # One worker stopped beating long ago (killed, or its node lost the network).
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE trial_heartbeats SET heartbeat = :old WHERE trial_id = :id"),
                {"old": datetime(2000, 1, 1), "id": claims[0].trial_id},  # type: ignore[union-attr]
            )
        samples = scrape(client)
    assert value(samples, "sweep_workers_alive", sweep="alive") == 1
    assert value(samples, "sweep_trials", sweep="alive", state="RUNNING") == 2
    engine.dispose()


def test_request_latency_is_labelled_by_route_template(client: TestClient) -> None:
    create(client, "timed", n_trials=1)
    before = scrape(client)
    for _ in range(3):
        assert client.get("/v1/sweeps/timed").status_code == 200
    assert client.get("/v1/sweeps/missing").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def count(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        name = "sweep_http_request_duration_seconds_count"
        return value(after, name, **labels) - value(before, name, **labels)

    assert count("/v1/sweeps/{name}", "200") == 3
    assert count("/v1/sweeps/{name}", "404") == 1
    assert count("unmatched", "404") == 1
    assert not any(("route", "/v1/sweeps/timed") in labels for _, labels in after)


def test_worker_histograms_count_claims_and_epochs(settings: Settings) -> None:
    before = parse(generate_latest(worker_registry()).decode())
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    spec = sweeps.SweepSpec.model_validate(
        # search trials only: evaluation trials would add claims and epochs of their own
        {"name": "timings", "task": "synthetic", "n_trials": 4, "epochs": 3, "baseline": False}
        | {"reevaluate_top": 0}
    )
    with transaction(factory) as session:
        sweeps.create_sweep(session, storage_for(settings), spec)
    engine.dispose()
    started = time.perf_counter()
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    wall = time.perf_counter() - started
    after = parse(generate_latest(worker_registry()).decode())

    study = optuna.load_study(study_name="timings", storage=settings.database_url)
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    claims = value(after, "sweep_claim_seconds_count") - value(before, "sweep_claim_seconds_count")
    epoch_count = "sweep_epoch_seconds_count"
    observed = value(after, epoch_count, task="synthetic") - value(
        before, epoch_count, task="synthetic"
    )
    assert claims == len(study.trials) == 4
    assert observed == epochs >= 4
    claim_time = value(after, "sweep_claim_seconds_sum") - value(before, "sweep_claim_seconds_sum")
    epoch_sum = "sweep_epoch_seconds_sum"
    epoch_time = value(after, epoch_sum, task="synthetic") - value(
        before, epoch_sum, task="synthetic"
    )
    assert 0 < claim_time < wall and 0 < epoch_time < wall  # parts of the run, in seconds
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def test_metrics_can_be_turned_off(sqlite_url: str) -> None:
    with TestClient(create_app(Settings(database_url=sqlite_url, metrics=False))) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200


def test_a_database_outage_shows_as_database_up_zero() -> None:
    # Nothing listens on port 1: every connection is refused at once.
    down = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    create_engine(down).dispose()
    with TestClient(create_app(Settings(database_url=down))) as client:
        samples = scrape(client)
    assert value(samples, "sweep_database_up") == 0
    assert not any(name == "sweep_trials" for name, _ in samples)
