"""`sweep dashboard`: the real optuna-dashboard on the sweep database, read through its own API."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import optuna
from optuna.trial import TrialState

from sweep.config import Settings
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.optuna_storage import storage_for
from sweep.worker.loop import Worker
from tests.e2e.conftest import Processes, free_port


def wait_for_dashboard(procs: Processes, base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if client.get("/api/studies").status_code == 200:
                return client
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the dashboard did not start:\n" + procs.log("dashboard"))


def attrs(items: list[dict[str, str]]) -> dict[str, str]:
    return {a["key"]: a["value"] for a in items}


def test_the_dashboard_shows_a_finished_sweep_by_name(processes, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url)
    spec = sweeps.SweepSpec.model_validate(
        {
            "name": "dash-reg",
            "description": "regularization on the synthetic task",
            "task": "synthetic",
            "n_trials": 5,
            "epochs": 3,
            "pruner": "none",
        }
    )
    with transaction(make_session_factory(engine)) as session:
        sweeps.create_sweep(session, storage_for(settings), spec)
    engine.dispose()
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0

    procs: Processes = processes(settings.database_url)
    port = free_port()
    procs.start("dashboard", "--port", str(port), name="dashboard")
    client = wait_for_dashboard(procs, f"http://127.0.0.1:{port}")

    summaries = client.get("/api/studies").json()["study_summaries"]
    # the sweep's study, and beside it its evaluation study (baseline, re-evaluations)
    assert [s["study_name"] for s in summaries] == ["dash-reg", "dash-reg.eval"]
    summary = summaries[0]
    assert summary["directions"] == ["minimize"]
    study_attrs = attrs(summary["user_attrs"])
    assert study_attrs["task"] == "synthetic"
    assert study_attrs["description"] == "regularization on the synthetic task"
    assert study_attrs["epochs"] == "3"
    assert set(json.loads(study_attrs["space"])) == {"dropout", "weight_decay"}

    detail: dict[str, Any] = client.get(f"/api/studies/{summary['study_id']}").json()
    assert detail["name"] == "dash-reg"
    assert {p["name"] for p in detail["intersection_search_space"]} == {"dropout", "weight_decay"}
    assert detail["has_intermediate_values"] is True

    study = optuna.load_study(study_name="dash-reg", storage=settings.database_url)
    assert (
        [t["number"] for t in detail["trials"]]
        == [t.number for t in study.trials]
        == [
            0,
            1,
            2,
            3,
            4,
        ]
    )
    for shown, trial in zip(detail["trials"], study.trials, strict=True):
        assert trial.state == TrialState.COMPLETE
        assert shown["state"] == "Complete"
        params = {p["name"]: p["param_internal_value"] for p in shown["params"]}
        assert params == trial.params
        assert 0.2 <= params["dropout"] <= 0.5 and 1e-5 <= params["weight_decay"] <= 1e-2
        steps = {v["step"]: v["value"] for v in shown["intermediate_values"]}
        assert steps == trial.intermediate_values and sorted(steps) == [0, 1, 2]
        assert shown["values"] == [trial.value] == [min(steps.values())]
        assert "curves" in attrs(shown["user_attrs"])  # the train/val loss per epoch
    assert detail["best_trials"][0]["number"] == study.best_trial.number


def test_the_dashboard_refuses_an_unmigrated_database(processes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(f"sqlite:///{tmp_path / 'empty.db'}")
    result = procs.run("dashboard", "--port", str(free_port()))
    assert result.returncode == 1
    assert "sweep db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_dashboard_help_warns_it_has_no_authentication(processes, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    result = processes(sqlite_url).run("dashboard", "--help")
    assert result.returncode == 0
    assert "no authentication" in " ".join(result.stdout.split())
    assert "127.0.0.1" in result.stdout
