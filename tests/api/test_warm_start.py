"""Warm start: "warm_start_from" copies an earlier sweep's finished trials into a new one."""

from __future__ import annotations

import optuna
from fastapi.testclient import TestClient

from sweep.config import Settings
from sweep.store import queries
from sweep.store.engine import make_engine
from tests.conftest import issue_token
from tests.helpers import create, run_worker

PRUNING = {"pruner": "median", "pruner_options": {"n_startup_trials": 1, "n_warmup_steps": 0}}


def test_a_warm_start_copies_finished_trials_outside_the_budget(
    client: TestClient, settings: Settings
) -> None:
    create(client, "earlier", n_trials=6, epochs=4, reevaluate_top=0, baseline=False, **PRUNING)
    run_worker(settings)
    earlier = optuna.load_study(study_name="earlier", storage=settings.database_url)
    finished = [t for t in earlier.trials if t.state.is_finished()]
    assert {t.state.name for t in finished} == {"COMPLETE", "PRUNED"}

    evaluation = {"reevaluate_top": 1, "reevaluate_seeds": 1, "race": False, "baseline": False}
    later = create(client, "later", n_trials=2, epochs=4, pruner="none",
                   warm_start_from="earlier", **evaluation)  # fmt: skip
    assert later["copied_trials"] == len(finished) == 6
    assert later["configurations_started"] == 0 and later["trials"] == {}
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:  # what autoscalers read: the whole budget is still to run
        assert queries.work_available(conn) == (2, 0)
    engine.dispose()
    copied = client.get("/v1/sweeps/later/trials").json()["items"]
    assert [t["copied_from"] for t in copied] == [
        {"sweep": "earlier", "number": n} for n in range(6)
    ]
    study = optuna.load_study(study_name="later", storage=settings.database_url)
    for mine, theirs in zip(study.trials, finished, strict=True):
        assert (mine.state, mine.params) == (theirs.state, theirs.params)
        assert mine.intermediate_values == theirs.intermediate_values  # pruned ones too
        assert mine.value == theirs.value

    run_worker(settings)
    after = client.get("/v1/sweeps/later").json()
    assert after["status"] == "completed"
    assert after["configurations_started"] == 2 and sum(after["trials"].values()) == 2
    assert after["copied_trials"] == 6
    # the answer and its re-evaluation are this sweep's own trials, never a copied one
    assert client.get("/v1/sweeps/later/best").json()["number"] >= 6
    assert [t["number"] >= 6 for t in client.get("/v1/sweeps/later/top?k=10").json()] == [
        True,
        True,
    ]
    assert sum(after["evaluations"].values()) == 1
    with TestClient(client.app) as browser:
        browser.post("/login", data={"token": issue_token(settings.database_url, "reader")})
        page = browser.get("/sweeps/later").text
        assert page.count("data-copied ") == 6 and "6 finished trials copied" in page


def test_a_warm_start_needs_an_existing_sweep_of_the_same_task_space_and_epochs(
    client: TestClient,
) -> None:
    create(client, "origin", n_trials=2, epochs=4)
    missing = client.post(
        "/v1/sweeps", json={"name": "orphan", "task": "synthetic", "warm_start_from": "nowhere"}
    )
    assert missing.status_code == 404 and "nowhere" in missing.json()["detail"]
    for field, value in (
        ("epochs", 5),
        ("space", {"dropout": {"low": 0.1, "high": 0.5}}),
        ("task", "digits-mlp"),
    ):
        body = {"name": "unlike", "task": "synthetic", "epochs": 4, field: value}
        refused = client.post("/v1/sweeps", json={**body, "warm_start_from": "origin"})
        assert refused.status_code == 422, refused.text
        assert field in refused.json()["detail"]
    # nothing was left behind by the refusals: the name is free
    assert client.get("/v1/sweeps/unlike").status_code == 404
    assert create(client, "unlike", warm_start_from="origin")["copied_trials"] == 0
