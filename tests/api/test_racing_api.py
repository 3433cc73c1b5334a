"""Racing: the leaders get a seed per round until the best is decided or the seeds are spent.

A real worker in process on SQLite and PostgreSQL, on the synthetic task with
seed noise of a known size, so the race has something to tell apart.
"""

from __future__ import annotations

import optuna
from fastapi.testclient import TestClient

from sweep.config import Settings
from tests.helpers import create, run_worker


def test_a_race_adds_seeds_drops_losers_and_stops_when_decided_or_spent(
    client: TestClient, settings: Settings
) -> None:
    body = {
        "name": "race",
        "task": "synthetic",
        "epochs": 4,
        "n_trials": 6,
        "seed": 3,
        "reevaluate_top": 3,
        "reevaluate_seeds": 2,
        "race_seeds": 5,
        "task_options": {"noise": 0.01},  # the leaders overlap on 2 seeds
    }
    assert client.post("/v1/sweeps", json=body).status_code == 201  # racing: the default
    run_worker(settings)
    sweep = client.get("/v1/sweeps/race").json()
    assert sweep["status"] == "completed" and sweep["race"] and sweep["race_seeds"] == 5

    study = optuna.load_study(study_name="race.eval", storage=settings.database_url)
    dropped = {int(n): seeds for n, seeds in study.user_attrs.get("race_dropped", {}).items()}
    first = 3 + 6
    seeds: dict[int, list[int]] = {}
    baseline_seeds = []
    for t in study.get_trials():
        kind, seed = t.user_attrs["kind"], t.user_attrs["seed"]
        if kind == "baseline":
            baseline_seeds.append(seed)
        elif kind == "reevaluation":
            seeds.setdefault(t.user_attrs["trial_number"], []).append(seed)
            # the first reevaluate_seeds are the fixed re-evaluation; later ones are rounds
            assert t.user_attrs.get("race_round") == (seed - first if seed - first >= 2 else None)
    assert len(seeds) == 3
    for number, runs in seeds.items():
        # the same seeds in the same order for every configuration, never past race_seeds
        assert sorted(runs) == list(range(first, first + len(runs))) and len(runs) <= 5
        if number in dropped:
            assert len(runs) == dropped[number]  # nothing more once out of the race
    alive = [n for n in seeds if n not in dropped]
    most = max(len(r) for r in seeds.values())
    assert most > 2 and dropped  # at least one round was raced, and someone lost it
    assert all(len(seeds[n]) == most for n in alive)
    assert sorted(baseline_seeds) == list(range(first, first + most))  # still paired

    best = client.get("/v1/sweeps/race/best").json()
    assert best["number"] in alive and best["fresh_seeds"] == most
    # over: decided, alone, or the seeds spent
    assert best["decided"] or len(alive) == 1 or most == 5
    assert best["baseline"]["fresh_seeds"] == most and best["baseline_p_value"] is not None
    print(f"race: seeds per configuration {sorted(map(len, seeds.values()))}, dropped {dropped}")


def test_without_race_the_fixed_reevaluation_stays(client: TestClient, settings: Settings) -> None:
    create(client, "fixed", n_trials=4, reevaluate_top=2, reevaluate_seeds=2, race=False)
    run_worker(settings)
    sweep = client.get("/v1/sweeps/fixed").json()
    assert sweep["race"] is False and sweep["race_seeds"] == 10
    assert sweep["evaluations"] == {"COMPLETE": 2 + 2 * 2}
