"""More budget for a sweep: POST /v1/sweeps/{name}/extend, and the page's button."""

from __future__ import annotations

import optuna
from fastapi.testclient import TestClient
from optuna.trial import TrialState

from sweep.config import Settings
from tests.conftest import issue_token
from tests.helpers import create, run_worker


def test_extend_runs_a_completed_sweep_again_and_reevaluates_the_new_best(
    client: TestClient, settings: Settings
) -> None:
    create(client, "grown", n_trials=3, reevaluate_top=1, reevaluate_seeds=2, baseline=False)
    run_worker(settings)
    before = client.get("/v1/sweeps/grown").json()
    assert before["status"] == "completed" and before["finished_at"] is not None

    extended = client.post("/v1/sweeps/grown/extend", json={"n_trials": 3})
    assert extended.status_code == 200, extended.text
    body = extended.json()
    assert body["status"] == "running" and body["n_trials"] == 6 and body["finished_at"] is None
    run_worker(settings)

    after = client.get("/v1/sweeps/grown").json()
    assert after["status"] == "completed"
    assert after["configurations_started"] == 6
    best = client.get("/v1/sweeps/grown/best").json()
    assert best["evaluation"] == "done" and best["fresh_seeds"] == 2
    # a configuration re-evaluated before the extension is not trained again
    assert sum(after["evaluations"].values()) in (2, 4)


def test_extend_is_refused_for_a_cancelled_sweep_a_reader_and_a_bad_count(
    client: TestClient, settings: Settings
) -> None:
    create(client, "stopped", n_trials=2)
    assert client.post("/v1/sweeps/stopped/extend", json={"n_trials": 0}).status_code == 422
    reader = {"Authorization": f"Bearer {issue_token(settings.database_url, 'reader')}"}
    denied = client.post("/v1/sweeps/stopped/extend", json={"n_trials": 1}, headers=reader)
    assert denied.status_code == 403
    queued = client.post("/v1/sweeps/stopped/extend", json={"n_trials": 1}).json()
    assert queued["status"] == "queued" and queued["n_trials"] == 3
    client.post("/v1/sweeps/stopped/cancel")
    refused = client.post("/v1/sweeps/stopped/extend", json={"n_trials": 1})
    assert refused.status_code == 409 and "cancelled" in refused.json()["detail"]


def test_the_extend_button_adds_budget_for_a_user_only(
    client: TestClient, settings: Settings
) -> None:
    create(client, "buttoned", n_trials=2)
    user, reader = (issue_token(settings.database_url, role) for role in ("user", "reader"))
    with TestClient(client.app) as browser:
        browser.post("/login", data={"token": reader})
        assert 'data-action="extend"' not in browser.get("/sweeps/buttoned").text
        browser.post("/login", data={"token": user})
        page = browser.get("/sweeps/buttoned").text
        assert 'data-action="extend"' in page
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        added = browser.post("/sweeps/buttoned/extend", data={"csrf": csrf, "n_trials": "5"})
        assert added.status_code == 200 and added.url.path == "/sweeps/buttoned"
        assert "0 / 7" in added.text
        bad = browser.post("/sweeps/buttoned/extend", data={"csrf": csrf, "n_trials": "0"})
        assert "extend by 1 to 10000 trials" in bad.text
        assert browser.post("/sweeps/buttoned/extend", data={"n_trials": "5"}).status_code == 403
    assert client.get("/v1/sweeps/buttoned").json()["n_trials"] == 7


def test_after_an_extension_the_baseline_runs_on_every_seed_the_leaders_run(
    client: TestClient, settings: Settings
) -> None:
    fields = {"reevaluate_top": 2, "reevaluate_seeds": 2, "race": True, "race_seeds": 3}
    create(client, "paired", n_trials=1, task_options={"noise": 0.01}, **fields)
    run_worker(settings)  # trial 0 on fresh seeds 1 and 2, alone in its race
    client.post("/v1/sweeps/paired/extend", json={"n_trials": 1})
    run_worker(settings)  # trial 1 on seeds 2 and 3 (past its own search seed), then raced

    study = optuna.load_study(study_name="paired.eval", storage=settings.database_url)
    seeds: dict[str, set[int]] = {}
    for t in study.get_trials(states=[TrialState.COMPLETE]):
        kind = t.user_attrs["kind"]
        seeds.setdefault(kind, set()).add(t.user_attrs["seed"])
        if kind == "reevaluation":
            seeds.setdefault(str(t.user_attrs["trial_number"]), set()).add(t.user_attrs["seed"])
    assert min(seeds["0"]) == 1 and min(seeds["1"]) == 2
    assert all(2 <= len(seeds[n]) <= 3 for n in "01")  # never past race_seeds
    assert seeds["baseline"] == seeds["reevaluation"]  # paired with every configuration
    best = client.get("/v1/sweeps/paired/best").json()
    assert best["evaluation"] == "done" and best["baseline_p_value"] is not None
    assert best["baseline"]["fresh_seeds"] >= best["fresh_seeds"] >= 2
