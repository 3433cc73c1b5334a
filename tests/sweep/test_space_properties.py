"""Property: any space the schema accepts yields only finite, in-range params through Optuna."""

from __future__ import annotations

import math
from typing import Any

import optuna
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sweep.definition.search import make_sampler
from sweep.definition.space import Choices, FloatRange, Space, trial_params

TRIALS = 100

# Mostly plausible numbers, sometimes anything a JSON parser can hand over (NaN, ±inf, huge).
numbers = st.one_of(
    st.floats(min_value=0, max_value=0.999),
    st.floats(min_value=0, max_value=0.999),
    st.floats(min_value=1e-8, max_value=0.5),
    st.sampled_from([0, 0.0, 1e-5, 1e-2, 0.2, 0.5, 0.9999999]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-5, max_value=5),
)


def _ordered(r: dict[str, Any]) -> dict[str, Any]:
    # Order most ranges (so more spaces pass), leaving NaN bounds to the validator.
    low, high = r["low"], r["high"]
    if low == low and high == high:
        return {**r, "low": min(low, high), "high": max(low, high)}
    return r


float_range = st.fixed_dictionaries(
    {"low": numbers, "high": numbers}, optional={"log": st.booleans()}
).map(_ordered)
choices = st.fixed_dictionaries({"choices": st.lists(numbers, min_size=1, max_size=6)})
param = st.one_of(float_range, choices)
spaces = st.one_of(
    st.fixed_dictionaries({}, optional={"dropout": param, "weight_decay": param}),
    st.fixed_dictionaries(
        {"dropout_1": param, "dropout_2": param}, optional={"weight_decay": param}
    ),
)


def _in_range(value: float, spec: FloatRange | Choices) -> bool:
    if isinstance(spec, Choices):
        return value in spec.choices
    return spec.low <= value <= spec.high


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=spaces, sampler=st.sampled_from(["random", "tpe", "qmc", "grid"]), seed=st.integers(0, 9)
)
def test_accepted_spaces_yield_finite_in_range_params(
    raw: dict[str, Any], sampler: str, seed: int
) -> None:
    try:
        space = Space.model_validate(raw)
    except ValidationError:
        event("rejected")
        return  # rejected with a message; the API answers 422
    event(f"accepted, sampler {sampler}")
    if sampler == "grid" and space.grid() is None:
        sampler = "random"  # the API rejects grid without choices (see SweepSpec)
    study = optuna.create_study(sampler=make_sampler(sampler, space, seed))
    distributions = space.distributions()
    specs = space.params()
    for _ in range(TRIALS):
        trial = study.ask(distributions)
        params = trial.params
        assert set(params) == set(specs)
        for name, value in params.items():
            assert math.isfinite(value), (name, value)
            assert _in_range(value, specs[name]), (name, value, specs[name])
        run = trial_params(params)
        for dropout in (run.dropout_1, run.dropout_2):
            assert 0 <= dropout < 1
        assert run.weight_decay >= 0 and math.isfinite(run.weight_decay)
        if sampler != "grid":  # the grid sampler stops the study once its grid is told in full,
            # which Optuna only allows inside study.optimize; asked trials count as visited
            study.tell(trial, run.dropout_1 + run.weight_decay)
