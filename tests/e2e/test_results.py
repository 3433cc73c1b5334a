"""Results a user can trust, with real `sweep api` and `sweep worker` processes.

Two sweeps with the same definition and seed, run by two workers at once,
give the same params and the same curves bit for bit, for the search trials
and for the baseline, re-evaluation and test runs; the sweep completes only
after those; `sweep plot` writes the chart.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest

from tests.e2e.conftest import Processes, wait_for
from tests.helpers import png_size

SPEC = {
    "task": "digits-mlp",
    "n_trials": 4,
    "epochs": 4,
    # a random sampler seeded per trial number: the same params whichever worker asks
    "sampler": "random",
    "pruner": "none",
    "seed": 11,
    "reevaluate_top": 2,
    "reevaluate_seeds": 2,
    "test_split": True,
    "race": False,  # the fixed re-evaluation: its counts are known in advance
}
SPEC_NAMES = ("first", "again")


def runs_by_key(url: str, study: str) -> dict[tuple[object, ...], optuna.trial.FrozenTrial]:
    """Completed trials keyed by what defines them: kind, params and seed."""
    trials = optuna.load_study(study_name=study, storage=url).get_trials()
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    return {
        (
            t.user_attrs.get("kind", "search"),
            tuple(sorted((t.params or t.user_attrs["params"]).items())),
            t.user_attrs["seed"],
        ): t
        for t in trials
    }


def test_same_seed_same_curves_and_the_evaluation_flow(processes, empty_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(empty_url)
    assert procs.run("db", "upgrade").returncode == 0
    api = procs.api()
    for i in range(2):
        procs.start("worker", "--device", "cpu", name=f"worker{i}")
    for name in SPEC_NAMES:
        assert api.post("/v1/sweeps", json={"name": name, **SPEC}).status_code == 201

    def completed() -> bool:
        return all(api.get(f"/v1/sweeps/{n}").json()["status"] == "completed" for n in SPEC_NAMES)

    wait_for(completed, 240, "both sweeps to complete:\n" + procs.log("worker0"))

    for study in ("first", "first.eval"):
        first = runs_by_key(empty_url, study)
        again = runs_by_key(empty_url, study.replace("first", "again"))
        assert first.keys() == again.keys()
        for key, trial in first.items():
            assert trial.user_attrs["curves"] == again[key].user_attrs["curves"], key
            assert trial.value == again[key].value

    sweep = api.get("/v1/sweeps/first").json()
    assert sweep["configurations_started"] == 4 and sum(sweep["trials"].values()) == 4
    assert sweep["evaluations"] == {"COMPLETE": 2 + 2 * 2 + 1}  # baseline on both fresh seeds
    best = api.get("/v1/sweeps/first/best").json()
    assert best["evaluation"] == "done" and best["fresh_seeds"] == 2
    fresh = list(best["fresh_values"].values())
    assert best["fresh_mean"] == pytest.approx(statistics.fmean(fresh))
    assert best["baseline"]["params"] == {"dropout": 0.0, "weight_decay": 0.0}
    assert best["baseline"]["seed"] == 11 + 4 and best["baseline"]["fresh_seeds"] == 2
    assert 0 <= best["test"]["accuracy"] <= 1 and best["test"]["seed"] == best["seed"]

    # the test run re-trains the chosen search run: same params and seed, same curve
    evaluation = runs_by_key(empty_url, "first.eval")
    [test_run] = [t for key, t in evaluation.items() if key[0] == "test"]
    chosen = api.get(f"/v1/sweeps/first/trials/{best['number']}").json()
    assert test_run.user_attrs["curves"]["val_loss"] == chosen["val_loss"]
    chart = Path(procs.logs / "chart.png")
    plotted = procs.run("plot", "first", "-o", str(chart), "--api", str(api.base_url))
    assert plotted.returncode == 0, plotted.stderr
    assert png_size(chart.read_bytes()) == (1200, 600)
