"""Duplicate configurations: a proposal equal to a completed trial reuses its result."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from sweep.config import Settings
from sweep.worker.loop import Worker

GRID_2X2 = {"dropout": {"choices": [0.2, 0.4]}, "weight_decay": {"choices": [1e-4, 1e-3]}}


def test_repeated_params_are_trained_once_and_reused_after(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"name": "dups", "task": "synthetic", "epochs": 3, "n_trials": 8, "space": GRID_2X2}
    assert client.post("/v1/sweeps", json={**body, "pruner": "none"}).status_code == 201
    with caplog.at_level(logging.INFO):
        assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0

    sweep = client.get("/v1/sweeps/dups").json()
    assert sweep["status"] == "completed"
    assert sweep["configurations_started"] == 8  # reused trials count in the budget
    trials = client.get("/v1/sweeps/dups/trials").json()["items"]
    assert [t["state"] for t in trials] == ["COMPLETE"] * 8
    trained = [t for t in trials if t["reused_from"] is None]
    reused = [t for t in trials if t["reused_from"] is not None]

    # A 2 × 2 space holds four configurations: each is trained at most once.
    points = [tuple(sorted(t["params"].items())) for t in trained]
    assert len(points) == len(set(points)) <= 4
    assert len(reused) == 8 - len(trained) >= 4
    claims = [r for r in caplog.records if getattr(r, "event", None) == "claim"]
    searched = [r for r in claims if getattr(r, "study", None) == "dups"]  # not dups.eval
    assert len(searched) == len(trained)  # the worker trained only those
    assert len([r for r in caplog.records if getattr(r, "event", None) == "reuse"]) == len(reused)

    by_number = {t["number"]: t for t in trials}
    for trial in reused:
        source = by_number[trial["reused_from"]]
        assert source["reused_from"] is None and source["number"] < trial["number"]
        assert trial["params"] == source["params"]
        assert trial["value"] == source["value"] and trial["metrics"] == source["metrics"]
        assert trial["worker"] is None  # no worker ran it
        detail = client.get(f"/v1/sweeps/dups/trials/{trial['number']}").json()
        assert (
            detail["val_loss"]
            == client.get(f"/v1/sweeps/dups/trials/{source['number']}").json()["val_loss"]
        )
    # Importances count each configuration once: four at most is not enough.
    importance = client.get("/v1/sweeps/dups/importance")
    assert importance.status_code == 409
    assert f"has {len(trained)} completed trials" in importance.json()["detail"]


def test_continuous_params_never_repeat_so_nothing_is_reused(
    client: TestClient, settings: Settings
) -> None:
    body = {"name": "cont", "task": "synthetic", "epochs": 2, "n_trials": 5, "pruner": "none"}
    assert client.post("/v1/sweeps", json=body).status_code == 201
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    trials = client.get("/v1/sweeps/cont/trials").json()["items"]
    assert len(trials) == 5 and all(t["reused_from"] is None and t["worker"] for t in trials)
