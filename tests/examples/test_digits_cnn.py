"""The example package examples/digits-cnn: installed like a user's, swept end to end."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sweep.config import Settings
from sweep.training import tasks
from sweep.training.tasks import UnknownTaskError, get_task
from tests.helpers import run_worker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits-cnn"
TASK = "digits-cnn"


def _installed() -> bool:
    try:
        get_task(TASK)
    except (UnknownTaskError, ImportError):
        return False
    return True


@pytest.fixture(scope="session")
def digits_cnn() -> str:
    """The example's task name; the package is installed here first if it is missing
    (`make install` installs it, editable)."""
    if not _installed():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", str(EXAMPLE)],
            check=True,
            timeout=600,
        )
        importlib.invalidate_caches()
        tasks._registered.cache_clear()
    assert _installed(), f"{TASK} is not importable after installing {EXAMPLE}"
    return TASK


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # training, not the store, is tested
def test_the_example_cnn_is_listed_and_swept_end_to_end_by_a_worker(
    digits_cnn: str, client: TestClient, settings: Settings, one_torch_thread: None
) -> None:
    listed = {task["name"]: task for task in client.get("/v1/tasks").json()}
    assert set(listed[digits_cnn]["options"]) == {"train_size", "lr", "batch_size"}

    refused = client.post(
        "/v1/sweeps", json={"name": "bad", "task": digits_cnn, "task_options": {"depth": 3}}
    )
    assert refused.status_code == 422 and "unknown option(s) depth" in refused.text

    body = {
        "name": "cnn",
        "task": digits_cnn,
        "n_trials": 3,
        "epochs": 3,
        "race": False,
        "task_options": {"train_size": 200, "lr": 0.003},
        "space": {
            "dropout_1": {"low": 0.0, "high": 0.5},
            "dropout_2": {"low": 0.0, "high": 0.5},
            "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
        },
    }
    assert client.post("/v1/sweeps", json=body).status_code == 201, body
    run_worker(settings)

    sweep = client.get("/v1/sweeps/cnn").json()
    assert sweep["status"] == "completed", sweep
    trials = client.get("/v1/sweeps/cnn/trials").json()["items"]
    assert len(trials) == 3 and {t["state"] for t in trials} == {"COMPLETE"}
    best = client.get("/v1/sweeps/cnn/best").json()
    assert best["value"] < 2.3  # below chance (ln 10): the CNN learned in 3 epochs
    assert best["metrics"]["val_accuracy"] > 0.3
