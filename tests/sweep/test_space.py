"""The search-space schema: defaults, validation rules, Optuna distributions."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from pydantic import ValidationError

from sweep.definition.space import Space, trial_params


def test_default_space_is_the_product_card_ranges() -> None:
    dists = Space().distributions()
    assert dists == {
        "dropout": FloatDistribution(0.2, 0.5),
        "weight_decay": FloatDistribution(1e-5, 1e-2, log=True),
    }


def test_weight_decay_grid_as_choices() -> None:
    space = Space.model_validate({"weight_decay": {"choices": [1e-2, 1e-3, 1e-4, 1e-5]}})
    assert space.distributions()["weight_decay"] == CategoricalDistribution(
        [1e-2, 1e-3, 1e-4, 1e-5]
    )
    assert space.grid() is None  # dropout is still a range
    full = Space.model_validate(
        {"dropout": {"choices": [0.2, 0.5]}, "weight_decay": {"choices": [1e-3]}}
    )
    assert full.grid() == {"dropout": [0.2, 0.5], "weight_decay": [1e-3]}


def test_per_layer_dropout() -> None:
    space = Space.model_validate(
        {"dropout_1": {"low": 0.4, "high": 0.5}, "dropout_2": {"low": 0.2, "high": 0.3}}
    )
    assert set(space.distributions()) == {"dropout_1", "dropout_2", "weight_decay"}
    params = trial_params({"dropout_1": 0.5, "dropout_2": 0.3, "weight_decay": 1e-4})
    assert (params.dropout_1, params.dropout_2, params.weight_decay) == (0.5, 0.3, 1e-4)


@pytest.mark.parametrize(
    ("space", "rule"),
    [
        ({"dropout": {"low": 0.2, "high": 1.0}}, "[0, 1)"),
        ({"dropout": {"low": -0.1, "high": 0.5}}, "[0, 1)"),
        ({"weight_decay": {"low": -1e-3, "high": 1e-2}}, "≥ 0"),
        ({"weight_decay": {"low": 1e-2, "high": 1e-5}}, "must not be greater"),
        ({"weight_decay": {"low": 0, "high": 1e-2, "log": True}}, "low > 0"),
        ({"dropout": {"low": math.nan, "high": 0.5}}, "finite"),
        ({"weight_decay": {"choices": [math.inf]}}, "finite"),
        ({"weight_decay": {"choices": []}}, "at least 1"),
        ({"momentum": {"low": 0.1, "high": 0.9}}, "Extra inputs"),
        ({"dropout": {"low": 0.2, "high": 0.5}, "dropout_1": {"low": 0.2, "high": 0.5}}, "either"),
        ({"dropout_1": {"low": 0.2, "high": 0.5}}, "together"),
    ],
)
def test_bad_spaces_are_rejected_with_the_rule(space: dict[str, object], rule: str) -> None:
    with pytest.raises(ValidationError, match=rule.replace("[", r"\[").replace(")", r"\)")):
        Space.model_validate(space)


def test_stored_space_round_trips() -> None:
    space = Space.model_validate({"weight_decay": {"choices": [1e-3, 1e-4]}})
    assert Space.model_validate(space.as_dict()).distributions() == space.distributions()
