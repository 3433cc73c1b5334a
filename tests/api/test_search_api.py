"""Search choices through the API: names and options checked, stored, shown; importances."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from sweep.config import Settings
from sweep.worker.loop import Worker

SYNTHETIC = {"task": "synthetic", "epochs": 10, "race": False}
GRID = {"dropout": {"choices": [0.2, 0.3, 0.4]}, "weight_decay": {"choices": [1e-4, 1e-3]}}


def post(client: TestClient, name: str, **fields: object) -> tuple[int, str]:
    response = client.post("/v1/sweeps", json={"name": name, **SYNTHETIC, **fields})
    return response.status_code, response.text


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("sampler", ["tpe", "random", "grid", "qmc", "gp", "cmaes"]),
        ("pruner", ["median", "percentile", "hyperband", "successive-halving", "none"]),
    ],
)
def test_an_unknown_name_is_a_422_listing_the_valid_ones(
    client: TestClient, field: str, names: list[str]
) -> None:
    status, text = post(client, "bad", **{field: "annealing"})
    assert status == 422
    assert field in text and all(f"'{name}'" in text for name in names)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sampler_options": {"n_startup": 3}}, "unknown option 'n_startup' for sampler 'tpe'"),
        ({"sampler_options": {"n_startup_trials": -1}}, "greater than or equal to 0"),
        ({"sampler_options": {"n_startup_trials": "many"}}, "valid integer"),
        ({"sampler": "random", "sampler_options": {"seed": 1}}, "sampler 'random' (valid: none)"),
        ({"sampler": "qmc", "sampler_options": {"qmc_type": "lattice"}}, "'sobol' or 'halton'"),
        (
            {"sampler": "cmaes", "sampler_options": {"lr_adapt": True, "use_separable_cma": True}},
            "cannot be combined",
        ),
        ({"pruner_options": {"n_warmup_steps": 11}}, "must not exceed epochs (10)"),
        ({"pruner": "percentile", "pruner_options": {"percentile": 101}}, "less than or equal"),
        ({"pruner": "hyperband", "pruner_options": {"reduction_factor": 1}}, "greater than"),
        (
            {"pruner": "hyperband", "pruner_options": {"min_resource": 8, "max_resource": 4}},
            "min_resource (8) must not exceed max_resource (4)",
        ),
        ({"pruner": "none", "pruner_options": {"n_warmup_steps": 1}}, "pruner 'none'"),
        ({"sampler": "grid", "space": GRID, "n_trials": 7}, "more than the grid's 6"),
        ({"sampler": "grid"}, "needs every parameter in space given as choices"),
    ],
)
def test_bad_options_are_a_422_saying_what_is_wrong(
    client: TestClient, fields: dict[str, object], message: str
) -> None:
    status, text = post(client, "bad", **fields)
    assert status == 422, text
    assert message in text


def test_options_are_stored_with_defaults_filled_in(client: TestClient) -> None:
    status, _ = post(
        client,
        "opts",
        sampler="cmaes",
        sampler_options={"popsize": 6},
        pruner="percentile",
        pruner_options={"percentile": 40},
    )
    assert status == 201
    sweep = client.get("/v1/sweeps/opts").json()
    assert sweep["sampler_options"]["popsize"] == 6
    assert sweep["sampler_options"]["n_startup_trials"] == 1  # CMA-ES's default
    assert sweep["pruner_options"]["percentile"] == 40
    assert sweep["pruner_options"]["n_warmup_steps"] == 5  # half of the 10 epochs
    hyperband = client.post(
        "/v1/sweeps", json={"name": "hb", **SYNTHETIC, "pruner": "hyperband"}
    ).json()
    assert hyperband["pruner_options"]["min_resource"] == 5
    assert hyperband["pruner_options"]["max_resource"] == 10


def test_a_grid_budget_defaults_to_the_grid_size(client: TestClient) -> None:
    status, text = post(client, "grid", sampler="grid", space=GRID)
    assert status == 201, text
    assert client.get("/v1/sweeps/grid").json()["n_trials"] == 6
    status, _ = post(client, "part", sampler="grid", space=GRID, n_trials=4)
    assert status == 201
    assert client.get("/v1/sweeps/part").json()["n_trials"] == 4


def test_importances_need_five_completed_trials_then_rank_the_parameters(
    client: TestClient, settings: Settings
) -> None:
    assert client.get("/v1/sweeps/nope/importance").status_code == 404
    # The synthetic loss moves with weight decay; a dropout range this narrow barely moves it.
    space = {
        "dropout": {"low": 0.34, "high": 0.36},
        "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
    }
    common = {**SYNTHETIC, "epochs": 2, "sampler": "random", "pruner": "none", "space": space}
    client.post("/v1/sweeps", json={"name": "few", **common, "n_trials": 4})
    client.post("/v1/sweeps", json={"name": "imp", **common, "n_trials": 10})
    assert client.get("/v1/sweeps/imp/importance").status_code == 409
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0

    few = client.get("/v1/sweeps/few/importance")
    assert few.status_code == 409
    assert "has 4 completed trials; importances need at least 5" in few.json()["detail"]
    found = client.get("/v1/sweeps/imp/importance").json()
    assert found["trials"] == 10
    shares = found["importances"]
    assert set(shares) == {"dropout", "weight_decay"}
    assert math.isclose(sum(shares.values()), 1.0)
    assert list(shares) == ["weight_decay", "dropout"]  # largest first
    assert shares["weight_decay"] > 0.6
    assert client.get("/v1/sweeps/imp/importance").json() == found  # seeded: same answer
