"""A real `sweep worker --log-format json` process: one JSON object per line, one line per event."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import optuna
from optuna.trial import TrialState
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from sweep.scheduler.claims import claim_trial
from sweep.scheduler.leases import TrialRun
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.optuna_storage import storage_for
from tests.conftest import fast_settings
from tests.e2e.conftest import Processes, free_port, wait_for


def test_json_logs_name_sweep_trial_and_worker_for_every_event(processes, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = fast_settings(sqlite_url)
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    spec = sweeps.SweepSpec.model_validate(
        # search trials only; evaluation claims log the same fields (their study: logged.eval)
        {"name": "logged", "task": "synthetic", "n_trials": 6, "epochs": 4, "baseline": False}
        | {"reevaluate_top": 0}
    )
    with transaction(factory) as session:
        sweep_id = sweeps.create_sweep(session, storage_for(settings), spec).id
    # A worker that claimed trial 0 and died long ago: the real worker must reap and retry it.
    ghost = claim_trial(settings, factory, sweep_id, "ghost-worker")
    assert ghost is not None and ghost.number == 0
    with TrialRun(settings, factory, ghost):  # it started: its lease named it as the trial's worker
        pass
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE trial_heartbeats SET heartbeat = :old WHERE trial_id = :id"),
            {"old": datetime(2000, 1, 1), "id": ghost.trial_id},
        )

    procs: Processes = processes(sqlite_url)
    port = free_port()
    worker = procs.start(
        "worker", "--device", "cpu", "--log-format", "json", "--log-level", "debug",
        "--metrics-port", str(port), name="worker",
    )  # fmt: skip

    def completed() -> bool:
        with factory() as session:
            return sweeps.get_sweep(session, "logged").status == "completed"

    wait_for(completed, 60, "the sweep to complete")
    worker_metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    engine.dispose()

    lines = [json.loads(line) for line in procs.log("worker").splitlines() if line.strip()]
    events = [line for line in lines if "event" in line]
    for line in events:
        assert line["sweep"] == "logged", line
        assert isinstance(line["trial"], int), line
        assert isinstance(line["worker"], str) and line["worker"], line
        assert line["level"] and line["time"] and line["message"]

    def of(kind: str) -> list[dict[str, Any]]:
        return [line for line in events if line["event"] == kind]

    name = of("claim")[0]["worker"]
    assert name.split(":")[1] == str(worker.pid)
    study = optuna.load_study(study_name="logged", storage=sqlite_url)
    ran = [t for t in study.trials if t.number != 0]  # trial 0 was the ghost's
    assert [r["trial"] for r in of("reap")] == [0]
    assert of("reap")[0]["worker"] == "ghost-worker"
    assert [(r["trial"], r["attempt"]) for r in of("retry")] == [(0, 2)]
    assert sorted(c["trial"] for c in of("claim")) == [t.number for t in ran]
    assert all(c["worker"] == name for c in of("claim"))
    reports = sum(len(t.intermediate_values) for t in ran)
    assert len(of("report")) == reports
    pruned = [t.number for t in ran if t.state == TrialState.PRUNED]
    complete = [t.number for t in ran if t.state == TrialState.COMPLETE]
    assert sorted(p["trial"] for p in of("prune")) == pruned
    assert sorted(f["trial"] for f in of("finish")) == complete
    assert len(pruned) + len(complete) == 6
    assert pruned  # this seeded sweep prunes (sampler and synthetic noise are both seeded)

    # The same process served its own timings on --metrics-port.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(worker_metrics)
        for s in family.samples
    }
    assert samples[("sweep_claim_seconds_count", ())] == 6
    assert samples[("sweep_epoch_seconds_count", (("task", "synthetic"),))] == reports
