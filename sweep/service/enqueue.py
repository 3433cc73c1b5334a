"""Configurations a user asks to try next (Optuna's ``enqueue_trial``)."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.space import Space
from sweep.definition.status import UNFINISHED_STATUSES
from sweep.errors import InvalidSweep, InvalidTransition, NotFound
from sweep.store import queries
from sweep.store.locks import locked_sweep
from sweep.store.optuna_storage import storage_for
from sweep.store.tables import Sweep


def checked_params(space: dict[str, Any], params: dict[str, Any]) -> dict[str, float]:
    """``params`` as floats if they are one point of ``space``; InvalidSweep naming the
    parameter that is unknown, missing, not a number or outside its range or choices."""
    distributions = Space.model_validate(space).distributions()
    for name in params:
        if name not in distributions:
            raise InvalidSweep(
                f"params.{name}: not a parameter of this sweep; its parameters are "
                + ", ".join(distributions)
            )
    checked: dict[str, float] = {}
    for name, distribution in distributions.items():
        if name not in params:
            raise InvalidSweep(f"params.{name}: missing; give a value for every parameter")
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidSweep(f"params.{name}: must be a number, not {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise InvalidSweep(f"params.{name}: must be finite")
        _check_in(name, number, distribution)
        checked[name] = number
    return checked


def _check_in(name: str, value: float, distribution: BaseDistribution) -> None:
    if isinstance(distribution, CategoricalDistribution) and value not in distribution.choices:
        choices = ", ".join(str(c) for c in distribution.choices)
        raise InvalidSweep(f"params.{name}: {value} is not one of the choices ({choices})")
    if isinstance(distribution, FloatDistribution) and not (
        distribution.low <= value <= distribution.high
    ):
        raise InvalidSweep(
            f"params.{name}: {value} is outside the range [{distribution.low}, {distribution.high}]"
        )


def enqueue_configuration(
    settings: Settings, factory: sessionmaker[Session], name: str, params: dict[str, Any]
) -> int:
    """Queue ``params`` as the sweep's next configuration; the number of its trial.

    It takes one configuration of the budget when queued (the claim counts it once):
    InvalidTransition when the sweep is finished or its budget is spent, InvalidSweep
    when the params are not a point of the sweep's space.
    """
    with factory() as session:
        found = session.execute(select(Sweep.id, Sweep.space).where(Sweep.name == name)).first()
    if found is None:
        raise NotFound(f"no sweep named {name!r}")
    sweep_id, space = found
    checked = checked_params(space, params)
    # Under the claim lock, so the budget seen here is the one claims see.
    with locked_sweep(factory, sweep_id) as session:
        sweep = session.get(Sweep, sweep_id, populate_existing=True)
        assert sweep is not None
        if sweep.status not in UNFINISHED_STATUSES:
            raise InvalidTransition(
                f"cannot queue a configuration on sweep {name!r}: it is {sweep.status}"
                + ("; extend it first" if sweep.status == "completed" else "")
            )
        conn = session.connection()
        study_id = queries.study_id(conn, sweep.name)
        assert study_id is not None, f"sweep {sweep.name} has no study"
        _, started, total = queries.budget_counts(conn, study_id)
        if started >= sweep.n_trials:
            raise InvalidTransition(
                f"sweep {name!r} has started all {sweep.n_trials} configurations of its "
                "budget; extend it to queue more"
            )
        storage = storage_for(settings, sweep.max_attempts)
        study = optuna.load_study(study_name=sweep.name, storage=storage)
        # The user attribute keeps the params to show while the trial waits: Optuna sets
        # them on the trial only when a worker takes it.
        study.enqueue_trial(checked, user_attrs={queries.ENQUEUED_MARK: checked})
        return int(total)
