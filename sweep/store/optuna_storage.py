"""Optuna glue: the storage, the sampler and pruner of a sweep, and its study."""

from __future__ import annotations

import copy
import functools
import logging
import warnings
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial

from sweep.config import Settings
from sweep.definition.search import make_pruner, make_sampler
from sweep.definition.space import Space
from sweep.store.engine import Pooling, engine_options, tune_sqlite
from sweep.store.optuna_compat import study_view
from sweep.store.tables import Sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger("sweep.trials")

# Optuna's heartbeat and retry APIs are marked experimental; the warning adds nothing for users.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Heartbeats are renewed by the worker's epoch writer, not by Study.optimize.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


@functools.cache
def _storage(
    url: str, heartbeat_interval: int, grace_period: int, max_attempts: int, pool: Pooling
) -> RDBStorage:
    storage = RDBStorage(
        url,
        engine_kwargs=engine_options(url, pool),
        skip_table_creation=True,
        skip_compatibility_check=True,  # readiness is checked by sweep.schema.check_ready
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=ReapCallback(max_attempts),
    )
    tune_sqlite(storage.engine)
    return storage


RUN_ATTRS = ("worker", "attempt", "curves", "metrics", "error")  # user attrs one run writes


def definition_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """The user attributes that define ``trial`` (an evaluation trial's params and seed),
    without what one run of it wrote: a retry starts clean."""
    return {k: v for k, v in trial.user_attrs.items() if k not in RUN_ATTRS}


class RetryCallback:
    """Re-queue a failed trial's params while it has attempts left, and log the outcome."""

    def __init__(self, max_attempts: int) -> None:
        self._max_attempts = max_attempts
        self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_attempts - 1)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # Optuna's callback copies the user attributes: hand it only those that define the trial.
        clean = copy.copy(trial)
        clean.user_attrs = definition_attrs(trial)
        self._retry(study, clean)
        attempt = len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) + 1
        fields = _event_fields(study, trial)
        if attempt < self._max_attempts:
            log.info(
                "retry sweep=%s trial=%d: attempt %d of %d queued",
                study.study_name,
                trial.number,
                attempt + 1,
                self._max_attempts,
                extra={"event": "retry", **fields, "attempt": attempt + 1},
            )
        else:
            log.warning(
                "retry sweep=%s trial=%d: no attempts left (%d used)",
                study.study_name,
                trial.number,
                attempt,
                extra={"event": "retry", **fields, "attempt": None},
            )


class ReapCallback(RetryCallback):
    """Logs a trial failed for a stale heartbeat (its worker died or hung), then retries it."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning(
            "reap sweep=%s trial=%d worker=%s: no heartbeat within the grace period",
            study.study_name,
            trial.number,
            trial.user_attrs.get("worker"),
            extra={"event": "reap", **_event_fields(study, trial)},
        )
        super().__call__(study, trial)


def _event_fields(study: optuna.Study, trial: FrozenTrial) -> dict[str, object]:
    return {
        "sweep": study.study_name,
        "trial": trial.number,
        "worker": trial.user_attrs.get("worker"),
    }


def retry_callback(max_attempts: int) -> RetryCallback:
    """Re-queue a failed trial's params while it has attempts left."""
    return RetryCallback(max_attempts)


def storage_for(settings: Settings, max_attempts: int = 3) -> RDBStorage:
    """The process-wide Optuna storage for the settings' database (one per retry budget)."""
    return _storage(
        settings.database_url,
        settings.heartbeat_interval,
        settings.grace_period,
        max_attempts,
        Pooling.of(settings),
    )


def create_study(storage: RDBStorage, sweep: Sweep) -> None:
    """Create the sweep's Optuna study, named as the sweep, with its definition as attributes."""
    study = optuna.create_study(
        storage=storage, study_name=sweep.name, direction="minimize", load_if_exists=False
    )
    study.set_user_attr("task", sweep.task)
    study.set_user_attr("space", sweep.space)
    study.set_user_attr("description", sweep.description)
    study.set_user_attr("epochs", sweep.epochs)


def load_study(
    storage: RDBStorage, sweep: Sweep, space: Space, trials_so_far: int, *, fresh: bool = False
) -> optuna.Study:
    """The sweep's study with its sampler and pruner, as stored with the sweep, on this
    process's cached view of the storage (``fresh``: a view that reads every trial again)."""
    return optuna.Study(
        study_name=sweep.name,
        storage=study_view(storage, fresh=fresh),
        sampler=make_sampler(
            sweep.sampler, space, sweep.seed, sweep.sampler_options, trials_so_far=trials_so_far
        ),
        pruner=make_pruner(sweep.pruner, sweep.epochs, sweep.pruner_options),
    )
