"""The whole service as a user runs it: `sweep api` and two `sweep worker` processes."""

from __future__ import annotations

import math

import optuna

from tests.e2e.conftest import Processes, wait_for


def test_two_workers_run_a_digits_sweep_through_the_api(processes, empty_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(empty_url)
    upgraded = procs.run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    api = procs.api()
    workers = [procs.start("worker", "--device", "cpu", name=f"worker{i}") for i in range(2)]

    # racing is on by default; race_seeds bounds it to a round or two here
    body = {"name": "e2e", "task": "digits-mlp", "n_trials": 6, "epochs": 3, "race_seeds": 5}
    assert api.post("/v1/sweeps", json=body).status_code == 201

    def finished() -> bool:
        return bool(api.get("/v1/sweeps/e2e").json()["status"] == "completed")

    wait_for(finished, 240, "the sweep to complete:\n" + procs.log("worker0"))
    sweep = api.get("/v1/sweeps/e2e").json()
    counts = sweep["trials"]
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 6
    assert sum(counts.values()) == 6

    study = optuna.load_study(study_name="e2e", storage=empty_url)
    best = api.get("/v1/sweeps/e2e/best").json()
    # ranked by the mean over its fresh seeds; value is the search (selection) run's
    assert best["evaluation"] == "done" and 3 <= best["fresh_seeds"] <= 5
    # racing ran until the best was decided, alone or had race_seeds
    dropped = optuna.load_study(study_name="e2e.eval", storage=empty_url).user_attrs.get(
        "race_dropped", {}
    )
    assert best["decided"] or best["fresh_seeds"] == 5 or len(dropped) == 2
    assert best["baseline"]["fresh_seeds"] >= best["fresh_seeds"]  # paired on every seed
    assert math.isclose(best["value"], study.trials[best["number"]].value)

    top = api.get("/v1/sweeps/e2e/top", params={"k": 3}).json()
    assert [t["fresh_mean"] for t in top] == sorted(t["fresh_mean"] for t in top)

    trials = api.get("/v1/sweeps/e2e/trials", params={"limit": 100}).json()["items"]
    assert len(trials) == 6
    assert {t["worker"].split(":")[1] for t in trials} <= {str(w.pid) for w in workers}
    for trial in trials:
        assert 0.2 <= trial["params"]["dropout"] <= 0.5
        assert 1e-5 <= trial["params"]["weight_decay"] <= 1e-2
        detail = api.get(f"/v1/sweeps/e2e/trials/{trial['number']}").json()
        ran = len(study.trials[trial["number"]].intermediate_values)
        assert len(detail["train_loss"]) == len(detail["val_loss"]) == ran >= 1
    # the study in the database is what the dashboard shows: named as the sweep
    assert set(study.trials[0].params) == {"dropout", "weight_decay"}
    assert study.trials[0].intermediate_values
