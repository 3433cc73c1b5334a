"""The v1 sweep routes, on SQLite and PostgreSQL, with a real worker in process."""

from __future__ import annotations

import math

import optuna
import pytest
from fastapi.testclient import TestClient

from sweep.config import Settings
from tests.helpers import SYNTHETIC, create, run_worker


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").status_code == 200


def test_create_get_and_duplicate(client: TestClient) -> None:
    body = create(client, "first", n_trials=3)
    assert body["status"] == "queued"
    assert body["space"] == {
        "dropout": {"low": 0.2, "high": 0.5, "log": False},
        "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
    }
    assert client.get("/v1/sweeps/first").json()["n_trials"] == 3
    again = client.post("/v1/sweeps", json={"name": "first", **SYNTHETIC})
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    assert client.get("/v1/sweeps/nope").status_code == 404


def test_a_sweep_runs_to_completion_and_best_matches_optuna(
    client: TestClient, settings: Settings
) -> None:
    create(client, "full", n_trials=7)
    assert client.get("/v1/sweeps/full/best").status_code == 404
    run_worker(settings)

    sweep = client.get("/v1/sweeps/full").json()
    assert sweep["status"] == "completed"
    assert sweep["configurations_started"] == 7
    assert sweep["trials"].get("COMPLETE", 0) + sweep["trials"].get("PRUNED", 0) == 7

    study = optuna.load_study(study_name="full", storage=settings.database_url)
    best = client.get("/v1/sweeps/full/best").json()
    # ranked by the mean over 3 fresh seeds; value is the search (selection) run's
    assert best["fresh_seeds"] == 3 and len(best["fresh_values"]) == 3
    assert math.isclose(best["value"], study.trials[best["number"]].value)
    assert best["epoch"] == best["metrics"]["epoch"]

    top = client.get("/v1/sweeps/full/top", params={"k": 3}).json()
    assert top[0]["number"] == best["number"]
    assert [t["fresh_mean"] for t in top] == sorted(t["fresh_mean"] for t in top)
    for trial in top:
        assert 0.2 <= trial["params"]["dropout"] <= 0.5
        assert 1e-5 <= trial["params"]["weight_decay"] <= 1e-2

    detail = client.get(f"/v1/sweeps/full/trials/{best['number']}").json()
    assert detail["epochs"] == [0, 1, 2, 3]
    assert len(detail["train_loss"]) == len(detail["val_loss"]) == len(detail["val_accuracy"]) == 4
    assert min(detail["val_loss"]) == pytest.approx(best["value"])
    assert detail["worker"] and detail["attempt"] == 1
    assert client.get("/v1/sweeps/full/trials/99").status_code == 404


def test_trial_pages_follow_the_cursor(client: TestClient, settings: Settings) -> None:
    create(client, "paged", n_trials=5, pruner="none")
    run_worker(settings)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/sweeps/paged/trials", params=params).json()
        seen += [t["number"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [0, 1, 2, 3, 4]
    complete = client.get("/v1/sweeps/paged/trials", params={"state": "COMPLETE"}).json()
    assert len(complete["items"]) == 5


def test_sweep_list_is_newest_first_with_cursor_and_status_filter(client: TestClient) -> None:
    for i in range(5):
        create(client, f"s{i}", n_trials=1)
    client.post("/v1/sweeps/s1/cancel")
    first = client.get("/v1/sweeps", params={"limit": 3}).json()
    assert [s["name"] for s in first["items"]] == ["s4", "s3", "s2"]
    rest = client.get("/v1/sweeps", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [s["name"] for s in rest["items"]] == ["s1", "s0"]
    assert rest["next_cursor"] is None
    cancelled = client.get("/v1/sweeps", params={"status": "cancelled"}).json()
    assert [s["name"] for s in cancelled["items"]] == ["s1"]


def test_pause_resume_cancel_and_disallowed_transitions(
    client: TestClient, settings: Settings
) -> None:
    create(client, "ctl", n_trials=3)
    assert client.post("/v1/sweeps/ctl/resume").status_code == 409
    assert client.post("/v1/sweeps/ctl/pause").json()["status"] == "paused"
    run_worker(settings)  # a paused sweep hands out nothing
    assert client.get("/v1/sweeps/ctl").json()["configurations_started"] == 0
    assert client.post("/v1/sweeps/ctl/pause").status_code == 409
    assert client.post("/v1/sweeps/ctl/resume").json()["status"] == "running"
    assert client.post("/v1/sweeps/ctl/cancel").json()["status"] == "cancelled"
    run_worker(settings)  # nor does a cancelled one
    assert client.get("/v1/sweeps/ctl").json()["configurations_started"] == 0
    response = client.post("/v1/sweeps/ctl/resume")
    assert response.status_code == 409
    assert "cancelled" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"space": {"dropout": {"low": 0.2, "high": 1.5}}}, "space"),
        ({"space": {"weight_decay": {"low": -1, "high": 1e-2}}}, "space"),
        ({"space": {"dropout": {"low": 0.5, "high": 0.2}}}, "space"),
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 10001}, "n_trials"),
        ({"epochs": 0}, "epochs"),
        ({"task": "no-such-task"}, "task"),
        ({"sampler": "annealing"}, "sampler"),
        ({"pruner": "sometimes"}, "pruner"),
        ({"name": "../x"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"task_options": {"bogus": 1}}, "task_options"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/v1/sweeps", json={"name": "bad", **SYNTHETIC, **body})
    assert response.status_code == 422, response.text
    assert field in response.text


def test_nan_in_raw_json_is_a_422(client: TestClient) -> None:
    raw = '{"name": "nan", "space": {"dropout": {"low": NaN, "high": 0.5}}}'
    response = client.post("/v1/sweeps", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_a_weight_decay_grid_returns_the_chosen_values(
    client: TestClient, settings: Settings
) -> None:
    grid = [1e-2, 1e-3, 1e-4, 1e-5]
    create(client, "grid", n_trials=4, space={"weight_decay": {"choices": grid}})
    run_worker(settings)
    trials = client.get("/v1/sweeps/grid/trials").json()["items"]
    assert {t["params"]["weight_decay"] for t in trials} <= set(grid)
    assert client.get("/v1/sweeps/grid/best").json()["params"]["weight_decay"] in grid


def test_a_diverging_model_fails_its_trial_and_leaves_best_alone(
    client: TestClient, settings: Settings
) -> None:
    # Trials with dropout above 0.35 (the synthetic optimum) report NaN from epoch 1 on.
    create(
        client,
        "diverge",
        sampler="random",
        pruner="none",
        n_trials=6,
        task_options={"nan_above_dropout": 0.35, "nan_at_epoch": 1},
    )
    run_worker(settings)
    sweep = client.get("/v1/sweeps/diverge").json()
    assert sweep["status"] == "completed"
    trials = client.get("/v1/sweeps/diverge/trials").json()["items"]
    failed = [t for t in trials if t["state"] == "FAIL"]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert failed and complete and len(trials) == 6  # failed once each, not retried
    for trial in failed:
        assert trial["params"]["dropout"] > 0.35
        assert "NaN" in trial["error"]
    detail = client.get(f"/v1/sweeps/diverge/trials/{failed[0]['number']}").json()
    assert detail["val_loss"][0] is not None and detail["val_loss"][1] is None  # null, not NaN

    best = client.get("/v1/sweeps/diverge/best")
    assert best.status_code == 200
    assert best.json()["params"]["dropout"] <= 0.35
    assert best.json()["value"] == min(t["value"] for t in complete)
    top = client.get("/v1/sweeps/diverge/top", params={"k": 10}).json()
    assert {t["number"] for t in top} == {t["number"] for t in complete}
