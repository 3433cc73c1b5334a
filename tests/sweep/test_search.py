"""Search choices: every sampler by name, options that reach the workers, the grid's budget."""

from __future__ import annotations

import itertools
import json

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.search import SAMPLERS, make_sampler
from sweep.definition.space import Space
from sweep.scheduler.claims import claim_trial
from sweep.service import sweeps
from sweep.store.engine import make_engine
from sweep.store.migrations import downgrade, upgrade
from sweep.store.optuna_storage import storage_for
from sweep.worker.loop import Worker
from tests.helpers import make_sweep

CHOICES = {"dropout": {"choices": [0.2, 0.3]}, "weight_decay": {"choices": [1e-4, 1e-3, 1e-2]}}
# Few random start-up trials, so that the model-based samplers propose from their model too.
STARTUP = {"tpe": {"n_startup_trials": 2}, "gp": {"n_startup_trials": 2}, "cmaes": {}}


def trials(settings: Settings, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=settings.database_url).trials


def test_sampler_names_build_optunas_samplers() -> None:
    space = Space.model_validate({"weight_decay": {"choices": [1e-3, 1e-2]}})
    expected = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "grid": optuna.samplers.GridSampler,
        "qmc": optuna.samplers.QMCSampler,
        "gp": optuna.samplers.GPSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
    }
    assert set(SAMPLERS) == set(expected)
    for name, cls in expected.items():
        assert isinstance(make_sampler(name, space, seed=0), cls)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_a_sweep_to_completion(
    settings: Settings, factory: sessionmaker[Session], sampler: str
) -> None:
    fields: dict[str, object] = {"sampler": sampler, "pruner": "none", "epochs": 2}
    if sampler == "grid":
        fields["space"] = CHOICES  # n_trials: the grid's size, 6
    else:
        fields.update(n_trials=5, sampler_options=STARTUP.get(sampler, {}))
    make_sweep(settings, factory, sampler, **fields)
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    done = trials(settings, sampler)
    assert [t.state for t in done] == [TrialState.COMPLETE] * (6 if sampler == "grid" else 5)
    for trial in done:
        assert 0.2 <= trial.params["dropout"] <= 0.5
        assert 1e-5 <= trial.params["weight_decay"] <= 1e-2
    with factory() as session:
        assert sweeps.get_sweep(session, sampler).status == "completed"


def test_pruner_options_decide_when_workers_prune(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    # The default warm-up would be 4 of the 8 epochs; here pruning may start after epoch 2.
    options = {"percentile": 1.0, "n_startup_trials": 1, "n_warmup_steps": 2}
    make_sweep(
        settings,
        factory,
        "early",
        sampler="random",
        n_trials=8,
        epochs=8,
        pruner="percentile",
        pruner_options=options,
    )
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    pruned = [t for t in trials(settings, "early") if t.state == TrialState.PRUNED]
    assert pruned, "a 1st-percentile pruner prunes the trials worse than the first"
    epochs_run = [len(t.intermediate_values) for t in pruned]
    assert min(epochs_run) == 3  # pruned at epoch index 2, the first after the warm-up
    assert all(n >= 3 for n in epochs_run)


def test_a_grid_hands_out_every_point_once_to_parallel_claims(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "grid", sampler="grid", space=CHOICES)
    claims = [claim_trial(settings, factory, sweep_id, f"w{i}") for i in range(7)]
    # Six workers each hold a trial, none finished: each got a different point, then no more.
    assert claims[6] is None
    points = {(c.params["dropout"], c.params["weight_decay"]) for c in claims[:6] if c}
    assert points == set(itertools.product([0.2, 0.3], [1e-4, 1e-3, 1e-2]))


def test_a_sweep_from_before_the_options_column_runs_with_the_defaults(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    engine = make_engine(settings.database_url)
    downgrade(engine, "0001")
    optuna.create_study(study_name="old", storage=storage_for(settings))
    with engine.begin() as conn:  # the row as revision 0001 stored it
        conn.execute(
            text(
                "INSERT INTO sweeps (name, description, task, task_options, n_trials, epochs,"
                " space, sampler, pruner, penalty, seed, max_attempts, status, created_at)"
                " VALUES ('old', '', 'synthetic', '{}', 1, 2, :space, 'tpe', 'median', 'l2',"
                " 0, 3, 'queued', CURRENT_TIMESTAMP)"
            ),
            {"space": json.dumps(Space().as_dict())},
        )
    upgrade(engine)
    engine.dispose()
    with factory() as session:
        sweep = sweeps.get_sweep(session, "old")
        assert sweep.search_options == {}
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    assert [t.state for t in trials(settings, "old")] == [TrialState.COMPLETE]
