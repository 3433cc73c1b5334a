"""GET /v1/tasks, the .npz check on submission, and the chart of a finished sweep."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from sweep.config import Settings
from tests.conftest import fast_settings, issue_token
from tests.helpers import (
    BAD_NPZ_FILES,
    create,
    good_arrays,
    png_size,
    run_worker,
    save_bad_npz,
    save_npz,
)


@pytest.fixture
def sqlite_client(sqlite_url: str) -> Iterator[TestClient]:
    """The API on an SQLite file: for checks of the request alone, which no dialect changes."""
    headers = {"Authorization": f"Bearer {issue_token(sqlite_url, 'user')}"}
    with TestClient(create_app(fast_settings(sqlite_url)), headers=headers) as test_client:
        yield test_client


def test_tasks_are_listed_with_their_options(sqlite_client: TestClient) -> None:
    tasks = {t["name"]: t for t in sqlite_client.get("/v1/tasks").json()}
    assert {"digits-mlp", "npz-mlp", "synthetic"} <= set(tasks)
    assert set(tasks["digits-mlp"]["options"]) == {"train_size", "lr", "batch_size"}
    assert "path" in tasks["npz-mlp"]["options"]
    assert "digits" in tasks["digits-mlp"]["description"]


@pytest.mark.parametrize("case", BAD_NPZ_FILES, ids=list(BAD_NPZ_FILES))
def test_each_bad_npz_file_gets_a_422_naming_the_problem(
    sqlite_client: TestClient, tmp_path: Path, case: str
) -> None:
    _changes, message = BAD_NPZ_FILES[case]
    body = {
        "name": "mine",
        "task": "npz-mlp",
        "task_options": {"path": str(save_bad_npz(tmp_path, case))},
    }
    response = sqlite_client.post("/v1/sweeps", json=body)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"].startswith("Value error, task_options: ")
    assert re.search(message, error["msg"]), error["msg"]


def test_a_missing_npz_file_and_a_test_split_without_test_data_get_422(
    sqlite_client: TestClient, tmp_path: Path
) -> None:
    missing = {"name": "m", "task": "npz-mlp", "task_options": {"path": str(tmp_path / "no.npz")}}
    response = sqlite_client.post("/v1/sweeps", json=missing)
    assert response.status_code == 422 and "npz file not found" in response.text

    path = str(save_npz(tmp_path, good_arrays()))
    body = {"name": "t", "task": "npz-mlp", "task_options": {"path": path}, "test_split": True}
    response = sqlite_client.post("/v1/sweeps", json=body)
    assert response.status_code == 422 and "X_test and y_test" in response.text

    arrays = {**good_arrays(), "X_test": np.zeros((3, 5)), "y_test": np.zeros(3, dtype=int)}
    body["task_options"] = {"path": str(save_npz(tmp_path, arrays))}
    created = sqlite_client.post("/v1/sweeps", json=body)
    assert created.status_code == 201, created.text


def test_chart_is_a_png_of_the_expected_size(client: TestClient, settings: Settings) -> None:
    create(client, "charted", n_trials=3, reevaluate_top=1, reevaluate_seeds=1)
    missing = client.get("/v1/sweeps/charted/chart.png")
    assert missing.status_code == 404 and "no trial" in missing.json()["detail"]
    run_worker(settings)
    response = client.get("/v1/sweeps/charted/chart.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (1200, 600)
    assert client.get("/v1/sweeps/nope/chart.png").status_code == 404
