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
from sweep.duplicates import reuse_if_duplicate
from sweep.models import ACTIVE_STATUSES, Sweep, utcnow
from sweep.space import Space
from sweep.study import load_study, make_pruner, retry_callback, storage_for
from sweep.training.tasks import EpochResult

log = logging.getLogger("sweep.trials")
T = TypeVar("T")
GIVE_UP_AFTER = 3  # configurations that fail every attempt before a hopeless sweep is failed


RUN_ATTRS = ("worker", "attempt", "curves", "metrics", "error")  # user attrs one run writes


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
    pruner_options: dict[str, Any]
    max_attempts: int
    trial_id: int
    number: int
    params: dict[str, Any]
    seed: int
    attempt: int
    worker: str
    study_name: str = ""  # the Optuna study holding the trial; the sweep's own if empty
    evaluate_test: bool = False

    @classmethod
    def of(cls, sweep: Sweep, **trial: Any) -> Claim:
        """A claim on a trial of ``sweep``: the sweep's settings plus the trial's own fields."""
        settings: dict[str, Any] = {
            "sweep_id": sweep.id,
            "sweep_name": sweep.name,
            "task": sweep.task,
            "task_options": dict(sweep.task_options),
            "epochs": sweep.epochs,
            "penalty": sweep.penalty,
            "patience": sweep.patience,
            "pruner": sweep.pruner,
            "pruner_options": sweep.pruner_options,
            "max_attempts": sweep.max_attempts,
        }
        return cls(**{**settings, **trial})

    @property
    def study(self) -> str:
        """The name of the Optuna study the trial belongs to."""
        return self.study_name or self.sweep_name


@dataclass
class Curves:
    """Per-epoch history of a running trial, kept as its ``curves`` user attribute."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    test: dict[int, tuple[float, float]] = field(default_factory=dict)  # epoch -> loss, accuracy

    def add(self, result: EpochResult) -> None:
        self.train_loss.append(result.train_loss)
        self.val_loss.append(result.val_loss)
        self.val_accuracy.append(result.val_accuracy)
        if result.test_loss is not None and result.test_accuracy is not None:
            self.test[result.epoch] = (result.test_loss, result.test_accuracy)

    def as_dict(self, epochs: int | None = None) -> dict[str, list[float]]:
        """The first ``epochs`` epochs (all by default) as lists."""
        n = len(self.val_loss) if epochs is None else epochs
        return {
            "train_loss": self.train_loss[:n],
            "val_loss": self.val_loss[:n],
            "val_accuracy": self.val_accuracy[:n],
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
        if best in self.test:  # measured only when asked for, at the chosen epoch
            metrics["test_loss"], metrics["test_accuracy"] = self.test[best]
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
    _reap_evaluation_trials(storage, sweep.name)


def _reap_evaluation_trials(storage: RDBStorage, name: str) -> None:
    try:
        study = optuna.load_study(study_name=queries.evaluation_study_name(name), storage=storage)
    except KeyError:  # a sweep created before evaluation studies existed
        return
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
    Proposals identical to a completed trial are completed with its result on
    the way (sweep.duplicates), so a worker only gets params worth training.
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
        storage = storage_for(settings, sweep.max_attempts)
        distributions = Space.model_validate(sweep.space).distributions()
        while True:
            waiting, started, total = queries.budget_counts(engine, study_id)
            if waiting == 0 and started >= sweep.n_trials:
                return None
            # A different sampler seed per claim keeps parallel workers apart, and one
            # worker's run reproducible.
            study = load_study(storage, sweep, trials_so_far=total)
            trial = study.ask(distributions)
            # A proposal that repeats a completed trial takes its result and uses up budget.
            if not reuse_if_duplicate(engine, storage, study, study_id, trial):
                break
        # A heartbeat now, so a worker killed before its first beat still goes stale.
        storage.record_heartbeat(trial._trial_id)
        configuration, attempt = trial.number, 1
        if waiting:  # possibly a retry: it carries the number of the first attempt
            system_attrs = storage.get_trial_system_attrs(trial._trial_id)
            configuration = int(system_attrs.get(queries.RETRY_MARK, trial.number))
            attempt = len(system_attrs.get("retry_history", [])) + 1
        if sweep.status == "queued":
            sweep.status = "running"
            sweep.started_at = utcnow()
        metrics.CLAIM_SECONDS.observe(time.perf_counter() - asked_at)
        return Claim.of(
            sweep,
            trial_id=trial._trial_id,
            number=trial.number,
            params=dict(trial.params),
            seed=sweep.seed + configuration,
            attempt=attempt,
            worker=worker,
        )


class TrialRun:
    """Reports one claimed trial's epochs to its study and finishes it.

    The per-epoch path is what bare Optuna does (report, should_prune). The
    lease thread renews the heartbeat, notices a cancelled sweep and saves the
    curves so far, off that path. Every write waits out a short database outage
    rather than failing the trial; a write to a trial a reaper failed raises LeaseLost.
    """

    def __init__(self, settings: Settings, factory: sessionmaker[Session], claim: Claim) -> None:
        self.claim = claim
        self.storage = storage_for(settings, claim.max_attempts)
        self.curves = Curves()
        self.cancelled = threading.Event()
        self._factory = factory
        self._interval = settings.heartbeat_interval
        self._max_outage_s = float(settings.grace_period * 3)
        self._stop = threading.Event()
        self._saved_epochs = -1
        pruner = make_pruner(claim.pruner, claim.epochs, claim.pruner_options)
        self.study = self._db(
            lambda: optuna.Study(claim.study, storage=self.storage, pruner=pruner), "load"
        )
        self.trial = optuna.Trial(self.study, claim.trial_id)
        self._epoch_started = time.perf_counter()

    def _db(self, call: Callable[[], T], what: str) -> T:
        try:
            return retry_on_outage(call, max_wait_s=self._max_outage_s, what=what)
        except UpdateFinishedTrialError as exc:
            raise LeaseLost(str(exc)) from exc
        except ValueError as exc:  # Optuna's tell on a trial that is already finished
            if "Cannot tell a" in str(exc):
                raise LeaseLost(str(exc)) from exc
            raise

    # ---- the lease ----------------------------------------------------------------------

    def __enter__(self) -> TrialRun:
        self._thread = threading.Thread(target=self._keep_lease, name="lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _keep_lease(self) -> None:
        tid = self.claim.trial_id
        try:
            # Who runs it and which attempt this is; a retry also drops its predecessor's curves.
            self.storage.set_trial_user_attr(tid, "worker", self.claim.worker)
            self.storage.set_trial_user_attr(tid, "attempt", self.claim.attempt)
            self.storage.set_trial_user_attr(tid, "seed", self.claim.seed)
        except Exception as exc:
            log.warning("trial %s: could not record its worker: %s", self.claim.number, exc)
        while not self._stop.wait(self._interval):
            try:
                self.storage.record_heartbeat(tid)
                if self.sweep_status() == "cancelled":
                    self.cancelled.set()
                self._save_curves()
            except Exception as exc:  # a database blip must not kill the trial
                log.warning("heartbeat for trial %s failed: %s", self.claim.number, exc)

    def _save_curves(self) -> None:
        epochs = len(self.curves.val_loss)
        if epochs != self._saved_epochs:
            self.storage.set_trial_user_attr(
                self.claim.trial_id, "curves", self.curves.as_dict(epochs)
            )
            self._saved_epochs = epochs

    def sweep_status(self) -> str:
        """The sweep's current status, read from the database."""
        with self._factory() as session:
            status = session.scalar(select(Sweep.status).where(Sweep.id == self.claim.sweep_id))
        return status or "cancelled"

    # ---- the per-epoch path and the end ---------------------------------------------------

    def report(self, result: EpochResult) -> bool:
        """Record one epoch; True if the trial should stop (pruned or NaN)."""
        now = time.perf_counter()
        metrics.EPOCH_SECONDS.labels(self.claim.task).observe(now - self._epoch_started)
        self._epoch_started = now
        self.curves.add(result)
        if not math.isfinite(result.val_loss):
            return True

        def write() -> bool:
            self.trial.report(result.val_loss, result.epoch)
            return self.trial.should_prune()

        return self._db(write, "report")

    def finish(self, *, pruned: bool = False) -> TrialState:
        """COMPLETE with the best val loss, PRUNED, or FAIL if the loss went NaN."""
        if self.curves.val_loss and not math.isfinite(self.curves.val_loss[-1]):
            self.fail("validation loss is NaN or infinite; the model diverged", retry=False)
            return TrialState.FAIL
        self._db(self._save_final_curves, "finish")
        if pruned:
            self._db(lambda: self.study.tell(self.trial, state=TrialState.PRUNED), "finish")
            return TrialState.PRUNED
        value, metrics = self.curves.summary()
        self._db(lambda: self._set_attr("metrics", metrics), "finish")
        self._db(lambda: self.study.tell(self.trial, value), "finish")
        return TrialState.COMPLETE

    def fail(self, error: str, *, retry: bool) -> None:
        """FAIL the trial with ``error``; re-queue its params if attempts are left."""
        self._db(self._save_final_curves, "fail")
        self._db(lambda: self._set_attr("error", error[:2000]), "fail")
        self._db(lambda: self.study.tell(self.trial, state=TrialState.FAIL), "fail")
        if retry:
            frozen = self._db(lambda: self.storage.get_trial(self.claim.trial_id), "read")
            self._db(lambda: retry_callback(self.claim.max_attempts)(self.study, frozen), "retry")

    def release(self) -> None:
        """Give the trial back: FAIL it and queue its params again, not counted as an attempt."""
        self.fail("released by its worker (shutdown); re-queued", retry=False)
        frozen = self._db(lambda: self.storage.get_trial(self.claim.trial_id), "read")
        requeued = optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=frozen.params,
            distributions=frozen.distributions,
            # what defines the trial (an evaluation trial's params and seed), not this run's results
            user_attrs={k: v for k, v in frozen.user_attrs.items() if k not in RUN_ATTRS},
            system_attrs={
                queries.RETRY_MARK: _configuration_number(frozen),
                "retry_history": list(frozen.system_attrs.get("retry_history", [])),
            },
        )
        self._db(lambda: self.study.add_trial(requeued), "re-queue")

    def _save_final_curves(self) -> None:
        self._stop.set()  # the lease thread must not write older curves after these
        if getattr(self, "_thread", None) is not None:
            self._thread.join()
        self._save_curves()

    def _set_attr(self, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.claim.trial_id, key, value)


def settle_sweep(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> None:
    """End the sweep: completed once its budget is spent and nothing runs; failed early
    when nothing has succeeded after GIVE_UP_AFTER configurations' worth of attempts."""
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
        succeeded = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
        failures = counts.get("FAIL", 0)
        hopeless = not succeeded and failures >= GIVE_UP_AFTER * sweep.max_attempts
        if not hopeless:
            if counts.get("RUNNING", 0) or counts.get("WAITING", 0):
                return
            if queries.configurations_started(engine, study_id) < sweep.n_trials:
                return
            if not queries.evaluation_finished(engine, sweep.name):
                return
        sweep.finished_at = utcnow()
        if succeeded:
            sweep.status = "completed"
            return
        sweep.status = "failed"
        last = _last_error(storage_for(settings, sweep.max_attempts), sweep.name)
        sweep.error = f"no trial succeeded in {failures} attempts; last error: {last}"
        log.error("sweep %s failed: %s", sweep.name, sweep.error)


def _last_error(storage: RDBStorage, name: str) -> str:
    study = optuna.load_study(study_name=name, storage=storage)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    errors = [str(t.user_attrs["error"]) for t in failed if "error" in t.user_attrs]
    return errors[-1] if errors else "unknown"
