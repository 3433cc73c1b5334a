"""Optuna glue: the storage, the sampler and pruner of a sweep, and its study."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from sweep.config import Settings
from sweep.db import engine_options, tune_sqlite
from sweep.models import Sweep
from sweep.space import Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLERS = ("tpe", "random", "grid", "qmc", "gp")
PRUNERS = ("median", "percentile", "hyperband", "successive-halving", "none")

# Optuna's heartbeat and retry APIs are marked experimental; the warning adds nothing for users.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Heartbeats are renewed by the worker's lease thread, not by Study.optimize.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


@functools.cache
def _storage(url: str, heartbeat_interval: int, grace_period: int, max_attempts: int) -> RDBStorage:
    storage = RDBStorage(
        url,
        engine_kwargs=engine_options(url),
        skip_table_creation=True,
        skip_compatibility_check=True,  # readiness is checked by sweep.schema.check_ready
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=retry_callback(max_attempts),
    )
    tune_sqlite(storage.engine)
    return storage


def retry_callback(max_attempts: int) -> RetryHeartbeatStaleTrialCallback:
    """Re-queue a failed trial's params while it has attempts left."""
    return RetryHeartbeatStaleTrialCallback(max_retry=max_attempts - 1)


def storage_for(settings: Settings, max_attempts: int = 3) -> RDBStorage:
    """The process-wide Optuna storage for the settings' database (one per retry budget)."""
    return _storage(
        settings.database_url, settings.heartbeat_interval, settings.grace_period, max_attempts
    )


def make_sampler(name: str, space: Space, seed: int) -> BaseSampler:
    """The sampler called ``name``, seeded with ``seed``."""
    factories: dict[str, Callable[[], BaseSampler]] = {
        # constant_liar keeps parallel workers from proposing the same point.
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, scramble=True),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "grid": lambda: optuna.samplers.GridSampler(space.grid() or {}, seed=seed),
    }
    return factories[name]()


def make_pruner(name: str, epochs: int) -> BasePruner:
    """The pruner called ``name``, its warm-up scaled to the number of epochs.

    Regularized models learn slower early and win late, so a fixed short warm-up
    prunes exactly the configurations the sweep is looking for.
    """
    warmup = max(1, epochs // 2)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup, max_resource=epochs)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup)
    return optuna.pruners.NopPruner()


def create_study(storage: RDBStorage, sweep: Sweep) -> None:
    """Create the sweep's Optuna study, named as the sweep, with its definition as attributes."""
    study = optuna.create_study(
        storage=storage, study_name=sweep.name, direction="minimize", load_if_exists=False
    )
    study.set_user_attr("task", sweep.task)
    study.set_user_attr("space", sweep.space)
    study.set_user_attr("description", sweep.description)
    study.set_user_attr("epochs", sweep.epochs)


def load_study(storage: RDBStorage, sweep: Sweep, sampler_seed: int) -> optuna.Study:
    """The sweep's study with its sampler (seeded ``sampler_seed``) and pruner."""
    space = Space.model_validate(sweep.space)
    return optuna.load_study(
        study_name=sweep.name,
        storage=storage,
        sampler=make_sampler(sweep.sampler, space, sampler_seed),
        pruner=make_pruner(sweep.pruner, sweep.epochs),
    )
