"""Baseline, re-evaluation across seeds and the test split, as the API reports them.

A real worker in process on SQLite and PostgreSQL; the synthetic task's loss
depends on the seed, so re-evaluations really change the ranking's numbers.
"""

from __future__ import annotations

import statistics

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.trial import TrialState
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from sweep.config import Settings
from sweep.definition.space import trial_params
from sweep.scheduler.claims import Claim, claim_trial
from sweep.scheduler.evaluation import claim_evaluation
from sweep.scheduler.leases import TrialRun
from sweep.scheduler.settling import settle_sweep
from sweep.service import sweeps
from sweep.training.tasks import RunConfig, get_task
from sweep.worker.loop import Worker
from tests.conftest import fast_settings
from tests.helpers import create, run_worker

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # digits trials train in this process


def trials_of(settings: Settings, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=settings.database_url).get_trials()


def test_baseline_and_reevaluations_run_after_the_budget_outside_the_search(
    client: TestClient, settings: Settings
) -> None:
    create(client, "ev", n_trials=5, seed=7, reevaluate_top=2, reevaluate_seeds=3)
    run_worker(settings)

    sweep = client.get("/v1/sweeps/ev").json()
    assert sweep["status"] == "completed"
    assert sweep["configurations_started"] == 5  # the budget is the search's alone
    assert sum(sweep["trials"].values()) == 5
    assert sweep["evaluations"] == {"COMPLETE": 3 + 2 * 3}

    search = trials_of(settings, "ev")
    evaluation = trials_of(settings, "ev.eval")
    assert all(t.state == TrialState.COMPLETE for t in evaluation)
    baselines = [t for t in evaluation if t.user_attrs["kind"] == "baseline"]
    assert all(t.user_attrs["params"] == {"dropout": 0.0, "weight_decay": 0.0} for t in baselines)
    # on the leaders' fresh seeds, so the two pair seed by seed
    assert sorted(t.user_attrs["seed"] for t in baselines) == [12, 13, 14]
    reevaluations = [t for t in evaluation if t.user_attrs["kind"] == "reevaluation"]
    search_seeds = {t.user_attrs["seed"] for t in search}
    assert search_seeds == {7 + n for n in range(5)}
    by_config: dict[int, list[int]] = {}
    for t in reevaluations:
        source = search[t.user_attrs["trial_number"]]
        assert t.user_attrs["params"] == source.params
        by_config.setdefault(source.number, []).append(t.user_attrs["seed"])
    # the two best search trials, each on the same three fresh seeds
    two_best = sorted((t for t in search if t.value is not None), key=lambda t: t.value)[:2]
    assert set(by_config) == {t.number for t in two_best}
    assert all(sorted(seeds) == [12, 13, 14] for seeds in by_config.values())
    assert not search_seeds & {12, 13, 14}

    top = client.get("/v1/sweeps/ev/top", params={"k": 4}).json()
    assert [t["fresh_seeds"] for t in top] == [3, 3, 0, 0]
    assert [t["ranked_by"] for t in top] == ["fresh_mean", "fresh_mean", "value", "value"]
    # ranked by the fresh seeds alone: the search run that selected them is left out
    assert top[0]["fresh_mean"] <= top[1]["fresh_mean"]
    for row in top[:2]:
        by_seed = {
            t.user_attrs["seed"]: t.value
            for t in reevaluations
            if t.user_attrs["trial_number"] == row["number"]
        }
        fresh = [by_seed[s] for s in sorted(by_seed)]
        assert row["value"] == search[row["number"]].value and row["selection_run"]
        assert row["fresh_values"] == {str(s): by_seed[s] for s in sorted(by_seed)}
        assert "mean" not in row and "std" not in row  # one set of statistics: the fresh seeds'
        assert row["fresh_mean"] == pytest.approx(statistics.fmean(fresh))
        assert row["fresh_std"] == pytest.approx(statistics.stdev(fresh))
        low, high = row["ci95"]
        half = 4.302652729749462 * statistics.stdev(fresh) / 3**0.5  # t(0.975, 2)
        assert (low, high) == pytest.approx((row["fresh_mean"] - half, row["fresh_mean"] + half))
    assert top[2]["fresh_mean"] is None and top[2]["ci95"] is None

    best = client.get("/v1/sweeps/ev/best").json()
    assert best["number"] == top[0]["number"] and best["evaluation"] == "done"
    assert best["runner_up"] == {
        "number": top[1]["number"],
        "params": top[1]["params"],
        "fresh_mean": top[1]["fresh_mean"],
        "ci95": top[1]["ci95"],
    }
    assert 0 <= best["p_value"] <= 1 and best["decided"] == (best["p_value"] < 0.05)
    base = best["baseline"]
    assert base["seed"] == 12 and base["fresh_seeds"] == 3 and len(base["ci95"]) == 2
    assert base["fresh_values"] == {str(t.user_attrs["seed"]): t.value for t in baselines}
    assert base["fresh_mean"] == pytest.approx(statistics.fmean(t.value for t in baselines))
    # the synthetic baseline (p=0, λ=0) is far worse on every shared seed
    assert base["fresh_mean"] > best["fresh_mean"] and best["baseline_p_value"] < 0.05
    assert best["test"] is None


def train(settings: Settings, factory: sessionmaker[Session], claim: Claim) -> None:
    """Run a claimed trial of the synthetic task to the end, as a worker would."""
    config = RunConfig(trial_params(claim.params), claim.epochs, claim.seed)
    with TrialRun(settings, factory, claim) as run:
        for result in get_task(claim.task).run(config):
            run.report(result)
        run.finish()


def test_until_reevaluation_finishes_best_says_one_seed(
    client: TestClient, settings: Settings, factory: sessionmaker[Session]
) -> None:
    create(client, "slow", n_trials=3, baseline=False, reevaluate_top=1, reevaluate_seeds=1)
    with factory() as session:
        sweep_id = sweeps.get_sweep(session, "slow").id
    while (claim := claim_trial(settings, factory, sweep_id, "w")) is not None:
        train(settings, factory, claim)
    best = client.get("/v1/sweeps/slow/best").json()
    assert best["fresh_seeds"] == 0 and best["fresh_std"] is None
    assert best["ranked_by"] == "value" and best["evaluation"] == "search"

    # the budget is spent: the re-evaluation is planned and claimed, and runs for a while
    claim = claim_evaluation(settings, factory, sweep_id, "w")
    assert claim is not None and claim.params == best["params"]
    settle_sweep(settings, factory, sweep_id)
    assert client.get("/v1/sweeps/slow").json()["status"] == "running"
    assert client.get("/v1/sweeps/slow/best").json()["fresh_seeds"] == 0
    train(settings, factory, claim)

    assert claim_evaluation(settings, factory, sweep_id, "w") is None  # nothing else to do
    settle_sweep(settings, factory, sweep_id)
    assert client.get("/v1/sweeps/slow").json()["status"] == "completed"
    assert client.get("/v1/sweeps/slow/best").json()["fresh_seeds"] == 1


def test_a_released_evaluation_trial_comes_back_as_itself(
    client: TestClient, settings: Settings, factory: sessionmaker[Session]
) -> None:
    create(client, "handback", n_trials=1, reevaluate_top=0, reevaluate_seeds=1)
    with factory() as session:
        sweep_id = sweeps.get_sweep(session, "handback").id
    search = claim_trial(settings, factory, sweep_id, "w")
    assert search is not None
    train(settings, factory, search)
    baseline = claim_evaluation(settings, factory, sweep_id, "w")
    assert baseline is not None and baseline.study == "handback.eval"
    with TrialRun(settings, factory, baseline) as run:
        run.release()  # a worker stopping (SIGTERM) gives its trial back
    again = claim_evaluation(settings, factory, sweep_id, "w2")
    assert again is not None and again.trial_id != baseline.trial_id
    assert (again.params, again.seed, again.attempt) == (baseline.params, baseline.seed, 1)
    assert again.params == {"dropout": 0.0, "weight_decay": 0.0}


def test_no_evaluation_when_switched_off(client: TestClient, settings: Settings) -> None:
    create(client, "plain", n_trials=3, baseline=False, reevaluate_top=0)
    run_worker(settings)
    sweep = client.get("/v1/sweeps/plain").json()
    assert sweep["status"] == "completed" and sweep["evaluations"] == {}
    best = client.get("/v1/sweeps/plain/best").json()
    assert best["fresh_seeds"] == 0 and best["baseline"] is None
    # one run each, all of them selection runs: nothing to test, so nothing decided
    assert best["fresh_seeds"] == 0 and best["runner_up"]["fresh_mean"] is None
    assert best["p_value"] is None and best["decided"] is False


def test_test_split_is_measured_once_for_the_chosen_configuration(
    client: TestClient, settings: Settings
) -> None:
    fields = {"task": "digits-mlp", "epochs": 3, "pruner": "none"}
    create(
        client, "held", n_trials=2, reevaluate_top=2, reevaluate_seeds=1, test_split=True, **fields
    )
    run_worker(settings)
    best = client.get("/v1/sweeps/held/best").json()
    assert best["evaluation"] == "done" and best["fresh_seeds"] == 1
    test = best["test"]
    assert test is not None and test["seed"] == best["seed"]
    assert test["loss"] > 0 and 0 <= test["accuracy"] <= 1
    tests = [t for t in trials_of(settings, "held.eval") if t.user_attrs["kind"] == "test"]
    assert len(tests) == 1 and tests[0].user_attrs["trial_number"] == best["number"]
    # the same params and seed as the chosen search run: the same validation curve
    search_run = client.get(f"/v1/sweeps/held/trials/{best['number']}").json()
    assert tests[0].user_attrs["curves"]["val_loss"] == search_run["val_loss"]
    assert test["epoch"] == best["epoch"]


def test_test_split_needs_a_task_with_one(client: TestClient) -> None:
    response = client.post(
        "/v1/sweeps", json={"name": "x", "task": "synthetic", "test_split": True}
    )
    assert response.status_code == 422
    assert "test_split" in response.text and "no test split" in response.text


def test_names_of_evaluation_studies_are_reserved(client: TestClient) -> None:
    response = client.post("/v1/sweeps", json={"name": "mine.eval", "task": "synthetic"})
    assert response.status_code == 422 and "reserved" in response.text


def test_a_batching_worker_runs_evaluation_trials_alone(
    client: TestClient, settings: Settings
) -> None:
    fields = {
        "task": "digits-mlp",
        "epochs": 3,
        "pruner": "none",
        "task_options": {"train_size": 100},
    }
    create(
        client,
        "stacked",
        n_trials=3,
        reevaluate_top=1,
        reevaluate_seeds=1,
        test_split=True,
        **fields,
    )
    assert Worker(settings, device="cpu", exit_when_idle=True, batch=3).run() == 0
    sweep = client.get("/v1/sweeps/stacked").json()
    assert sweep["status"] == "completed" and sweep["evaluations"] == {"COMPLETE": 3}
    best = client.get("/v1/sweeps/stacked/best").json()
    assert best["fresh_seeds"] == 1 and best["baseline"] is not None
    assert best["test"] is not None and 0 <= best["test"]["accuracy"] <= 1


def test_the_schema_has_one_set_of_statistics_and_racing_on_by_default(sqlite_url: str) -> None:
    schemas = create_app(fast_settings(sqlite_url)).openapi()["components"]["schemas"]
    for model in ("ConfigurationOut", "BestOut", "BaselineOut"):
        fields = set(schemas[model]["properties"])
        assert {"fresh_mean", "fresh_std", "fresh_seeds", "ci95", "fresh_values"} <= fields
        assert not fields & {"mean", "std", "seeds", "seed_values"}, model
    assert {"selection_run", "value"} <= set(schemas["BestOut"]["properties"])
    create_body = next(s for name, s in schemas.items() if "race_seeds" in s["properties"])
    assert create_body["properties"]["race"]["default"] is True
