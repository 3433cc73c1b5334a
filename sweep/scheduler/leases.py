"""The lease on a running trial: its per-epoch reports, its pruning, and how it ends."""

from __future__ import annotations

import functools
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
from sqlalchemy.orm import Session, sessionmaker

from sweep import metrics
from sweep.config import Settings
from sweep.definition.search import make_pruner
from sweep.scheduler.claims import Claim
from sweep.scheduler.pruning import PruningViews
from sweep.store import queries
from sweep.store.engine import retry_on_outage
from sweep.store.epoch_writer import EpochWriter, Lease, LeaseLost
from sweep.store.locks import locked_sweep
from sweep.store.optuna_compat import is_tell_on_finished_trial, study_view
from sweep.store.optuna_storage import definition_attrs, retry_callback, storage_for
from sweep.training.tasks import EpochResult

log = logging.getLogger("sweep.trials")
T = TypeVar("T")


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

    The per-epoch path touches no database: an epoch goes to the worker's
    ``EpochWriter`` (which writes it, the curves and the heartbeat with the other
    running trials' within one flush interval, and notices a cancelled sweep), and the
    pruning decision is made on the worker's cached view of the study (``PruningView``).
    Every end of the trial flushes first. Every write waits out a short database
    outage rather than failing the trial; a write to a trial a reaper failed raises LeaseLost.
    """

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        claim: Claim,
        *,
        writer: EpochWriter | None = None,
        views: PruningViews | None = None,
    ) -> None:
        self.claim = claim
        self.storage = storage_for(settings, claim.max_attempts)
        self.curves = Curves()
        self._factory = factory
        self._max_outage_s = float(settings.grace_period * 3)
        self._own_writer = writer is None  # a run outside a worker writes for itself
        self._writer = writer or EpochWriter(
            factory,
            flush_interval=settings.flush_interval,
            heartbeat_interval=settings.heartbeat_interval,
        )
        views = views or PruningViews(factory, settings.flush_interval)
        self._view = views.of(
            claim.study, make_pruner(claim.pruner, claim.epochs, claim.pruner_options)
        )
        self._lease: Lease | None = None
        self.cancelled = threading.Event()
        self._epoch_started = time.perf_counter()

    @functools.cached_property
    def study(self) -> optuna.Study:
        """The trial's study, loaded when the trial ends (it is told by number)."""
        view = study_view(self.storage)  # the claim has read the study into it already
        return self._db(lambda: optuna.Study(self.claim.study, storage=view), "load")

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
        # Who runs it and which attempt this is (a retry starts without its predecessor's).
        attrs = {
            "worker": self.claim.worker,
            "attempt": self.claim.attempt,
            "seed": self.claim.seed,
        }
        self._lease = self._writer.hold(self.claim.trial_id, self.claim.sweep_id, attrs)
        self.cancelled = self._lease.cancelled
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop renewing the lease (again is fine): the trial has ended or is given up.

        What it reported and has not been written yet is written first, if the store takes it.
        """
        if self._lease is not None:
            if self._writer.pending(self._lease):
                try:
                    self._writer.flush(self._lease)
                except Exception:  # lost, or the database is away: the reaper settles it
                    log.warning("trial %d's last epochs not written", self.claim.number)
            self._writer.release(self._lease)
        if self._own_writer:
            self._writer.close()

    def _flush(self, what: str, **user_attrs: Any) -> None:
        """Write this trial's pending epochs and ``user_attrs`` now (before it ends)."""
        lease = self._lease or self.__enter__()._lease
        assert lease is not None
        self._writer.set_attrs(lease, {"curves": self.curves.as_dict(), **user_attrs})
        self._db(lambda: self._writer.flush(lease), what)

    # ---- the per-epoch path and the end ---------------------------------------------------

    def report(self, result: EpochResult) -> bool:
        """Record one epoch; True if the trial should stop (pruned or NaN)."""
        now = time.perf_counter()
        metrics.EPOCH_SECONDS.labels(self.claim.task).observe(now - self._epoch_started)
        self._epoch_started = now
        self.curves.add(result)
        if not math.isfinite(result.val_loss):
            return True
        lease = self._lease or self.__enter__()._lease
        assert lease is not None
        self._writer.report(lease, result.epoch, result.val_loss, {"curves": self.curves.as_dict()})
        tid = self.claim.trial_id
        pruned = self._db(
            lambda: self._view.should_prune(tid, result.epoch, result.val_loss), "prune"
        )
        records = self._view.records(tid)
        if records:
            self._writer.set_attrs(lease, system_attrs=records)
        return pruned

    def finish(self, *, pruned: bool = False) -> TrialState:
        """COMPLETE with the best val loss, PRUNED, or FAIL if the loss went NaN."""
        if self.curves.val_loss and not math.isfinite(self.curves.val_loss[-1]):
            self.fail("validation loss is NaN or infinite; the model diverged", retry=False)
            return TrialState.FAIL
        if pruned:
            self._flush("finish")
            self.close()
            self._db(lambda: self.study.tell(self.claim.number, state=TrialState.PRUNED), "finish")
            return TrialState.PRUNED
        value, metrics = self.curves.summary()
        self._flush("finish", metrics=metrics)
        self.close()
        self._db(lambda: self.study.tell(self.claim.number, value), "finish")
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
        self._flush("fail", error=error[:2000])
        self.close()

        def fail_and_requeue() -> None:
            # One step for whoever settles the sweep or plans its evaluation: they take the
            # same lock, so they never see the failed trial without its retry.
            with locked_sweep(self._factory, self.claim.sweep_id):
                self.study.tell(self.claim.number, state=TrialState.FAIL)
                if requeue is not None:
                    requeue(self.study, self.storage.get_trial(self.claim.trial_id))

        self._db(fail_and_requeue, "fail")


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
