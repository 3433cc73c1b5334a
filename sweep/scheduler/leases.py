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
from sweep.definition.status import SweepStatus
from sweep.scheduler.claims import Claim
from sweep.store import queries
from sweep.store.engine import retry_on_outage
from sweep.store.locks import locked_sweep
from sweep.store.optuna_compat import is_tell_on_finished_trial, study_view, trial_of
from sweep.store.optuna_storage import definition_attrs, retry_callback, storage_for
from sweep.store.tables import Sweep
from sweep.training.tasks import EpochResult

log = logging.getLogger("sweep.trials")
T = TypeVar("T")


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
        view = study_view(self.storage)  # the claim's, which has read the study already
        self.study = self._db(
            lambda: optuna.Study(claim.study, storage=view, pruner=pruner), "load"
        )
        self.trial = claim.trial or trial_of(self.study, claim.trial_id)
        self._epoch_started = time.perf_counter()

    def _db(self, call: Callable[[], T], what: str) -> T:
        try:
            return retry_on_outage(call, max_wait_s=self._max_outage_s, what=what)
        except UpdateFinishedTrialError as exc:
            raise LeaseLost(str(exc)) from exc
        except ValueError as exc:
            if is_tell_on_finished_trial(exc):
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
        tid = self.claim.trial_id  # its worker, attempt and seed were recorded by the claim
        while not self._stop.wait(self._interval):
            try:
                self.storage.record_heartbeat(tid)
                if self.sweep_status() == SweepStatus.CANCELLED:
                    self.cancelled.set()
                self._save_curves()
            except Exception:  # a database blip must not kill the trial; the next beat retries
                metrics.background_error(log, "lease", f"trial {self.claim.number}'s heartbeat")

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
        return status or SweepStatus.CANCELLED

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
        retry_with = retry_callback(self.claim.max_attempts) if retry else None
        self._fail(error, requeue=retry_with)

    def release(self, reason: str = "released by its worker (shutdown); re-queued") -> None:
        """Give the trial back: FAIL it and queue its params again, not counted as an attempt."""
        self._fail(reason, requeue=_requeue_unchanged)

    def _fail(
        self, error: str, requeue: Callable[[optuna.Study, FrozenTrial], None] | None
    ) -> None:
        self._db(self._save_final_curves, "fail")
        self._db(lambda: self._set_attr("error", error[:2000]), "fail")

        def fail_and_requeue() -> None:
            # One step for whoever settles the sweep or plans its evaluation: they take the
            # same lock, so they never see the failed trial without its retry.
            with locked_sweep(self._factory, self.claim.sweep_id):
                self.study.tell(self.trial, state=TrialState.FAIL)
                if requeue is not None:
                    requeue(self.study, self.storage.get_trial(self.claim.trial_id))

        self._db(fail_and_requeue, "fail")

    def _save_final_curves(self) -> None:
        self.close()  # the lease thread must not write older curves after these
        self._save_curves()

    def _set_attr(self, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.claim.trial_id, key, value)


def _requeue_unchanged(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial``'s configuration again as the same attempt (a release is no failure)."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=definition_attrs(trial),
            system_attrs={
                queries.RETRY_MARK: _configuration_number(trial),
                "retry_history": list(trial.system_attrs.get("retry_history", [])),
            },
        )
    )
