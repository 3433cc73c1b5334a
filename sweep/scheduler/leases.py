"""The lease on a running trial: its heartbeat, its per-epoch reports, and how it ends."""

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
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sweep import metrics
from sweep.config import Settings
from sweep.definition.search import make_pruner
from sweep.scheduler.claims import Claim
from sweep.store import queries
from sweep.store.engine import retry_on_outage
from sweep.store.optuna_storage import retry_callback, storage_for
from sweep.store.tables import Sweep
from sweep.training.tasks import EpochResult

log = logging.getLogger("sweep.trials")
T = TypeVar("T")
RUN_ATTRS = ("worker", "attempt", "curves", "metrics", "error")  # user attrs one run writes


class LeaseLost(Exception):
    """The trial was failed by a reaper while this worker still held it."""


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
        self._thread: threading.Thread | None = None
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
        self.close()

    def close(self) -> None:
        """Stop renewing the lease (again is fine): the trial has ended or is given up."""
        self._stop.set()
        if self._thread is not None:
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
        self.close()  # the lease thread must not write older curves after these
        self._save_curves()

    def _set_attr(self, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.claim.trial_id, key, value)
