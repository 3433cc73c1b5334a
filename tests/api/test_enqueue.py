"""Queue a configuration to try next: POST /v1/sweeps/{name}/trials."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from sweep.config import Settings
from tests.conftest import issue_token
from tests.helpers import create, run_worker

CONFIG = {"dropout": 0.3, "weight_decay": 1e-4}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({**CONFIG, "momentum": 0.9}, "params.momentum"),  # not a parameter of the space
        ({"dropout": 0.3}, "params.weight_decay"),  # missing
        ({**CONFIG, "dropout": 0.7}, "params.dropout"),  # outside [0.2, 0.5]
        ({**CONFIG, "weight_decay": 1.0}, "params.weight_decay"),  # outside [1e-5, 1e-2]
        ({**CONFIG, "dropout": "0.3"}, "params.dropout"),  # not a number
        ({**CONFIG, "dropout": 10**400}, "params.dropout"),  # too large for a float
    ],
)
def test_a_configuration_outside_the_space_is_a_422_naming_the_parameter(
    client: TestClient, params: dict[str, object], named: str
) -> None:
    create(client, "checked", n_trials=3)
    refused = client.post("/v1/sweeps/checked/trials", json={"params": params})
    assert refused.status_code == 422, refused.text
    assert named in refused.json()["detail"]
    assert client.get("/v1/sweeps/checked").json()["configurations_started"] == 0


def test_a_choice_must_be_one_of_the_grid_and_unknown_sweeps_are_404(
    client: TestClient, settings: Settings
) -> None:
    create(client, "grid", n_trials=4, space={"weight_decay": {"choices": [1e-2, 1e-4]}})
    wrong = client.post("/v1/sweeps/grid/trials", json={"params": CONFIG | {"weight_decay": 1e-3}})
    assert wrong.status_code == 422 and "not one of the choices" in wrong.json()["detail"]
    assert client.post("/v1/sweeps/grid/trials", json={"params": CONFIG}).status_code == 201
    assert client.post("/v1/sweeps/nowhere/trials", json={"params": CONFIG}).status_code == 404
    reader = {"Authorization": f"Bearer {issue_token(settings.database_url, 'reader')}"}
    denied = client.post("/v1/sweeps/grid/trials", json={"params": CONFIG}, headers=reader)
    assert denied.status_code == 403


def test_an_enqueued_configuration_is_the_next_trial_a_worker_runs_counted_once(
    client: TestClient, settings: Settings
) -> None:
    create(client, "steered", n_trials=1, baseline=False, reevaluate_top=0)
    run_worker(settings)
    assert client.post("/v1/sweeps/steered/extend", json={"n_trials": 2}).status_code == 200

    queued = client.post("/v1/sweeps/steered/trials", json={"params": CONFIG})
    assert queued.status_code == 201, queued.text
    trial = queued.json()
    assert trial["number"] == 1 and trial["state"] == "WAITING"
    assert trial["enqueued"] is True and trial["params"] == CONFIG
    # it takes one configuration of the budget at once
    assert client.get("/v1/sweeps/steered").json()["configurations_started"] == 2
    listed = client.get("/v1/sweeps/steered/trials", params={"state": "WAITING"}).json()
    assert [(t["number"], t["enqueued"]) for t in listed["items"]] == [(1, True)]

    run_worker(settings)
    after = client.get("/v1/sweeps/steered").json()
    assert after["status"] == "completed"
    assert after["configurations_started"] == 3 and after["trials"] == {"COMPLETE": 3}
    trials = client.get("/v1/sweeps/steered/trials").json()["items"]
    assert [t["enqueued"] for t in trials] == [False, True, False]
    assert trials[1]["params"] == CONFIG and trials[1]["value"] is not None
    # run next: before the sampler's own proposal
    assert trials[1]["started_at"] < trials[2]["started_at"]

    with TestClient(client.app) as browser:
        browser.post("/login", data={"token": issue_token(settings.database_url, "reader")})
        assert "data-enqueued" in browser.get("/sweeps/steered").text


def test_enqueue_is_refused_once_the_budget_is_spent_or_the_sweep_is_finished(
    client: TestClient, settings: Settings
) -> None:
    create(client, "full", n_trials=2)
    for dropout in (0.25, 0.35):
        body = {"params": {**CONFIG, "dropout": dropout}}
        assert client.post("/v1/sweeps/full/trials", json=body).status_code == 201
    over = client.post("/v1/sweeps/full/trials", json={"params": CONFIG})
    assert over.status_code == 409 and "extend" in over.json()["detail"]
    client.post("/v1/sweeps/full/cancel")
    cancelled = client.post("/v1/sweeps/full/trials", json={"params": CONFIG})
    assert cancelled.status_code == 409 and "cancelled" in cancelled.json()["detail"]


def test_the_page_form_queues_a_configuration_and_says_what_was_wrong(
    client: TestClient, settings: Settings
) -> None:
    create(client, "formed", n_trials=3)
    with TestClient(client.app) as browser:
        browser.post("/login", data={"token": issue_token(settings.database_url, "user")})
        page = browser.get("/sweeps/formed").text
        assert 'data-action="enqueue"' in page and 'name="param.weight_decay"' in page
        form = {"csrf": re.search(r'name="csrf" value="([^"]+)"', page)[1]}  # type: ignore[index]
        bad = browser.post("/sweeps/formed/enqueue", data={**form, "param.dropout": "0.9"})
        assert "params.dropout" in bad.text and "outside the range" in bad.text
        fields = {f"param.{k}": str(v) for k, v in CONFIG.items()}
        done = browser.post("/sweeps/formed/enqueue", data={**form, **fields})
        assert done.status_code == 200 and "data-enqueued" in done.text
    waiting = client.get("/v1/sweeps/formed/trials").json()["items"]
    assert [(t["params"], t["enqueued"]) for t in waiting] == [(CONFIG, True)]
