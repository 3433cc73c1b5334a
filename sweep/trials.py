"""The scheduling core: claim, heartbeat, report, finish, reap stale trials and retry.

Every state change of a trial goes through Optuna's storage; the sweep's own
row is only read here, except to mark it running, completed or failed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from sweep import metrics, queries
from sweep.config import Settings
from sweep.db import retry_on_outage, sweep_lock, transaction
from sweep.models import ACTIVE_STATUSES, Sweep, utcnow
from sweep.space import Space
from sweep.study import load_study, make_pruner, retry_callback, storage_for
from sweep.training.tasks import EpochResult

log = logging.getLogger("sweep.trials")
T = TypeVar("T")


class LeaseLost(Exception):
    """The trial was failed by a reaper while this worker still held it."""


@dataclass(frozen=True)
class Claim:
    """A trial handed to one worker, with what it needs to train it."""

    sweep_id: int
    sweep_name: str
    task: str
    task_options: dict[str, Any]
    epochs: int
    penalty: str
    patience: int | None
    pruner: str
    max_attempts: int
    trial_id: int
    number: int
    params: dict[str, Any]
    seed: int
    attempt: int


@dataclass
class Curves:
    """Per-epoch history of a running trial, kept as its ``curves`` user attribute."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def add(self, result: EpochResult) -> None:
        self.train_loss.append(result.train_loss)
        self.val_loss.append(result.val_loss)
        self.val_accuracy.append(result.val_accuracy)

    def as_dict(self) -> dict[str, list[float]]:
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
        }

    def summary(self) -> tuple[float, dict[str, Any]]:
        """The objective (best val loss) and the metrics at the epoch it came from."""
        best = min(range(len(self.val_loss)), key=self.val_loss.__getitem__)
        metrics = {
            "epoch": best,
            "train_loss": self.train_loss[best],
            "val_accuracy": self.val_accuracy[best],
            # Validation minus training loss: the overfitting regularization fights.
            "generalization_gap": self.val_loss[best] - self.train_loss[best],
            "epochs_run": len(self.val_loss),
        }
        return self.val_loss[best], metrics


def _configuration_number(trial: FrozenTrial) -> int:
    """The number of the trial that first tried these params (retries share it)."""
    return int(trial.system_attrs.get(queries.RETRY_MARK, trial.number))


def active_sweeps(factory: sessionmaker[Session]) -> list[Sweep]:
    """Queued and running sweeps, oldest first: the ones workers take trials from."""
    with factory() as session:
        query = select(Sweep).where(Sweep.status.in_(ACTIVE_STATUSES)).order_by(Sweep.id)
        return list(session.scalars(query))


def reap_stale_trials(settings: Settings, sweep: Sweep) -> None:
    """Fail the sweep's trials whose heartbeats stopped, and re-queue their params."""
    storage = storage_for(settings, sweep.max_attempts)
    study = optuna.load_study(study_name=sweep.name, storage=storage)
    optuna.storages.fail_stale_trials(study)


def claim_trial(
    settings: Settings,
    factory: sessionmaker[Session],
    sweep_id: int,
    worker: str,
) -> Claim | None:
    """Give this worker one trial of the sweep, or None if it has no work to hand out.

    Under the sweep's lock: the sweep must be queued or running, and either a
    re-queued trial is waiting or the budget has room for a new configuration.
    """
    asked_at = time.perf_counter()
    with transaction(factory) as session, sweep_lock(session, sweep_id):
        sweep = session.get(Sweep, sweep_id, populate_existing=True)
        if sweep is None or sweep.status not in ACTIVE_STATUSES:
            return None
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        study_id = queries.study_id(engine, sweep.name)
        assert study_id is not None, f"sweep {sweep.name} has no study"
        counts = queries.state_counts(engine, study_id)
        started = queries.configurations_started(engine, study_id)
        if counts.get("WAITING", 0) == 0 and started >= sweep.n_trials:
            return None
        storage = storage_for(settings, sweep.max_attempts)
        # A different sampler seed per claim keeps parallel workers apart, and one
        # worker's run reproducible.
        study = load_study(storage, sweep, sampler_seed=sweep.seed + sum(counts.values()))
        trial = study.ask(Space.model_validate(sweep.space).distributions())
        # A heartbeat now, so a worker killed before its first beat still goes stale.
        storage.record_heartbeat(trial._trial_id)
        frozen = storage.get_trial(trial._trial_id)
        attempt = len(frozen.system_attrs.get("retry_history", [])) + 1
        storage.set_trial_user_attr(trial._trial_id, "worker", worker)
        storage.set_trial_user_attr(trial._trial_id, "attempt", attempt)
        storage.set_trial_user_attr(trial._trial_id, "curves", Curves().as_dict())
        if sweep.status == "queued":
            sweep.status = "running"
            sweep.started_at = utcnow()
        metrics.CLAIM_SECONDS.observe(time.perf_counter() - asked_at)
        return Claim(
            sweep_id=sweep.id,
            sweep_name=sweep.name,
            task=sweep.task,
            task_options=dict(sweep.task_options),
            epochs=sweep.epochs,
            penalty=sweep.penalty,
            patience=sweep.patience,
            pruner=sweep.pruner,
            max_attempts=sweep.max_attempts,
            trial_id=trial._trial_id,
            number=trial.number,
            params=dict(frozen.params),
            seed=sweep.seed + _configuration_number(frozen),
            attempt=attempt,
        )


class Heartbeat:
    """Renews a trial's lease from a background thread while the block runs."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: float) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as exc:  # a database blip must not kill the trial
                log.warning("heartbeat for trial %s failed: %s", self._trial_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TrialRun:
    """Reports one claimed trial's epochs to its study and finishes it.

    Every write waits out a short database outage (with backoff) rather than
    failing the trial; a write to a trial a reaper has failed raises LeaseLost.
    """

    def __init__(self, settings: Settings, factory: sessionmaker[Session], claim: Claim) -> None:
        self.claim = claim
        self.storage = storage_for(settings, claim.max_attempts)
        self._factory = factory
        self._max_outage_s = float(settings.grace_period * 3)
        pruner = make_pruner(claim.pruner, claim.epochs)
        self.study = self._db(
            lambda: optuna.load_study(
                study_name=claim.sweep_name, storage=self.storage, pruner=pruner
            ),
            "load",
        )
        self.trial = optuna.Trial(self.study, claim.trial_id)
        self.curves = Curves()
        self._epoch_started = time.perf_counter()

    def _db(self, call: Callable[[], T], what: str) -> T:
        try:
            return retry_on_outage(call, max_wait_s=self._max_outage_s, what=what)
        except UpdateFinishedTrialError as exc:
            raise LeaseLost(str(exc)) from exc

    def _guard(self) -> None:
        # A reaped trial is FAIL; writing to it again must not overwrite its retry.
        if self.storage.get_trial(self.claim.trial_id).state != TrialState.RUNNING:
            raise LeaseLost(f"trial {self.claim.number} of {self.claim.sweep_name} was reaped")

    def report(self, result: EpochResult) -> bool:
        """Record one epoch; True if the trial should stop (pruned or NaN)."""
        now = time.perf_counter()
        metrics.EPOCH_SECONDS.labels(self.claim.task).observe(now - self._epoch_started)
        self._epoch_started = now
        self.curves.add(result)

        def write() -> bool:
            self.storage.set_trial_user_attr(self.claim.trial_id, "curves", self.curves.as_dict())
            if not math.isfinite(result.val_loss):
                return True
            self.trial.report(result.val_loss, result.epoch)
            return self.trial.should_prune()

        return self._db(write, "report")

    def sweep_status(self) -> str:
        """The sweep's current status (a cancel stops the trial at the next epoch)."""

        def read() -> str | None:
            with self._factory() as session:
                return session.scalar(select(Sweep.status).where(Sweep.id == self.claim.sweep_id))

        return self._db(read, "status check") or "cancelled"

    def finish(self, *, pruned: bool = False) -> TrialState:
        """COMPLETE with the best val loss, PRUNED, or FAIL if the loss went NaN."""

        def write() -> TrialState:
            self._guard()
            if self.curves.val_loss and not math.isfinite(self.curves.val_loss[-1]):
                self._set_error("validation loss is NaN or infinite; the model diverged")
                self.study.tell(self.trial, state=TrialState.FAIL)
                return TrialState.FAIL
            if pruned:
                self.study.tell(self.trial, state=TrialState.PRUNED)
                return TrialState.PRUNED
            value, metrics = self.curves.summary()
            self.storage.set_trial_user_attr(self.claim.trial_id, "metrics", metrics)
            self.study.tell(self.trial, value)
            return TrialState.COMPLETE

        return self._db(write, "finish")

    def fail(self, error: str, *, retry: bool) -> None:
        """FAIL the trial with ``error``; re-queue its params if attempts are left."""

        def write() -> None:
            self._set_error(error)
            self.study.tell(self.trial, state=TrialState.FAIL)

        self._db(write, "fail")
        if retry:
            frozen = self._db(lambda: self.storage.get_trial(self.claim.trial_id), "read")
            self._db(lambda: retry_callback(self.claim.max_attempts)(self.study, frozen), "retry")

    def release(self) -> None:
        """Give the trial back: FAIL it and queue its params again, not counted as an attempt."""
        self._db(lambda: self._set_error("released by its worker (shutdown); re-queued"), "release")
        self._db(lambda: self.study.tell(self.trial, state=TrialState.FAIL), "release")
        frozen = self._db(lambda: self.storage.get_trial(self.claim.trial_id), "read")
        requeued = optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=frozen.params,
            distributions=frozen.distributions,
            system_attrs={
                queries.RETRY_MARK: _configuration_number(frozen),
                "retry_history": list(frozen.system_attrs.get("retry_history", [])),
            },
        )
        self._db(lambda: self.study.add_trial(requeued), "re-queue")

    def _set_error(self, error: str) -> None:
        self._guard()
        self.storage.set_trial_user_attr(self.claim.trial_id, "error", error[:2000])


def settle_sweep(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> None:
    """Mark the sweep completed (or failed, if nothing succeeded) once its budget is spent."""
    with transaction(factory) as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None or sweep.status not in ("queued", "running", "paused"):
            return
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        study_id = queries.study_id(engine, sweep.name)
        if study_id is None:
            return
        counts = queries.state_counts(engine, study_id)
        if counts.get("RUNNING", 0) or counts.get("WAITING", 0):
            return
        if queries.configurations_started(engine, study_id) < sweep.n_trials:
            return
        succeeded = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
        sweep.finished_at = utcnow()
        if succeeded:
            sweep.status = "completed"
            return
        sweep.status = "failed"
        sweep.error = _last_error(storage_for(settings, sweep.max_attempts), sweep.name)
        log.error("sweep %s failed: %s", sweep.name, sweep.error)


def _last_error(storage: RDBStorage, name: str) -> str:
    study = optuna.load_study(study_name=name, storage=storage)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    errors = [str(t.user_attrs["error"]) for t in failed if "error" in t.user_attrs]
    return "every trial failed; last error: " + (errors[-1] if errors else "unknown")
