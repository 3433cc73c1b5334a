"""One outcome path for a trial, trained alone or as a member of a batch.

Both ways of training start a run here (claim logged, lease taken), decide after
each epoch whether the trial ends and how (``after_epoch``), and close it with
one log record per outcome. A failure of the training code fails the trial with
a retry; a database outage leaves it to the reaper; a lost lease drops the result.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.space import trial_params
from sweep.errors import first_line
from sweep.scheduler.claims import Claim
from sweep.scheduler.leases import TrialRun
from sweep.scheduler.pruning import PruningViews
from sweep.store.engine import is_outage
from sweep.store.epoch_writer import EpochWriter, LeaseLost
from sweep.training.tasks import EpochResult, RunConfig

log = logging.getLogger("sweep.worker")


class Outcome(StrEnum):
    """How a claimed trial ended, as the worker's log records name it."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"
    RELEASED = "released"  # given back on SIGTERM, re-queued
    CANCELLED = "cancelled"  # its sweep was cancelled
    LOST = "lost"  # a reaper failed it while this worker held it: the result is dropped
    ABANDONED = "abandoned"  # the database was unreachable: the reaper re-queues it


@dataclass(frozen=True)
class WorkerContext:
    """What a worker lends every trial it trains: its store, its writer of epochs and its
    pruning views, its name, device and stop signal."""

    settings: Settings
    factory: sessionmaker[Session]
    name: str
    device: str
    stopping: threading.Event
    writer: EpochWriter
    views: PruningViews


def run_config(claim: Claim, device: str) -> RunConfig:
    """What the task needs to train the claimed trial."""
    return RunConfig(
        params=trial_params(claim.params),
        epochs=claim.epochs,
        seed=claim.seed,
        penalty=claim.penalty,
        patience=claim.patience,
        device=device,
        options=claim.task_options,
        evaluate_test=claim.evaluate_test,
    )


def _fields(claim: Claim, worker: str) -> dict[str, object]:
    # the study, not the sweep: evaluation trials are numbered in "<sweep>.eval"
    return {
        "sweep": claim.sweep_name,
        "study": claim.study,
        "trial": claim.number,
        "worker": worker,
    }


def _where(claim: Claim) -> str:
    return f"sweep={claim.study} trial={claim.number} attempt={claim.attempt}"


def start_run(context: WorkerContext, claim: Claim, slot: int | None = None) -> TrialRun:
    """Log the claim and open the trial's run (enter it with ``with`` to hold its lease)."""
    extra: dict[str, object] = {"event": "claim", **_fields(claim, context.name)}
    extra.update(attempt=claim.attempt, params=claim.params)
    if slot is not None:
        extra["slot"] = slot
    at_slot = f" slot={slot}" if slot is not None else ""
    log.info(
        "claim %s params=%s worker=%s%s",
        _where(claim),
        claim.params,
        context.name,
        at_slot,
        extra=extra,
    )
    return TrialRun(
        context.settings, context.factory, claim, writer=context.writer, views=context.views
    )


def after_epoch(
    run: TrialRun, result: EpochResult, stopping: threading.Event, *, last: bool
) -> Outcome | None:
    """Report one epoch; how the trial ended if it did (``last``: no epoch follows), else None."""
    if run.report(result):  # pruned, or the loss is NaN (finish fails it then)
        pruned = math.isfinite(result.val_loss)
        return Outcome(run.finish(pruned=pruned).name.lower())
    if last:
        return Outcome(run.finish().name.lower())
    if stopping.is_set():
        run.release()
        return Outcome.RELEASED
    if run.cancelled.is_set():
        run.fail("stopped: the sweep was cancelled", retry=False)
        return Outcome.CANCELLED
    return None


def end_with_error(run: TrialRun, exc: BaseException, worker: str) -> Outcome:
    """The training raised: FAIL the trial with a retry, unless the database is what failed."""
    fields = _fields(run.claim, worker)
    if isinstance(exc, LeaseLost):
        log.warning(
            "lease lost, result dropped: %s (%s)",
            _where(run.claim),
            exc,
            extra={"event": "lost", **fields},
        )
        return Outcome.LOST
    if is_outage(exc):  # the reaper re-queues it once the database is back
        log.error(
            "database unreachable; abandoning %s: %s",
            _where(run.claim),
            first_line(exc),
            extra={"event": "abandon", **fields},
        )
        return Outcome.ABANDONED
    log.error(
        "trial failed: %s",
        _where(run.claim),
        exc_info=exc,
        extra={"event": "finish", **fields, "state": "fail"},
    )
    try:
        run.fail(f"{type(exc).__name__}: {exc}", retry=True)
    except LeaseLost:
        log.warning(
            "lease lost while failing %s", _where(run.claim), extra={"event": "lost", **fields}
        )
        return Outcome.LOST
    return Outcome.FAIL


def log_outcome(run: TrialRun, outcome: Outcome, started: float, worker: str) -> None:
    """One record for a trial that ended after an epoch: how it ended and how long it took.

    (``end_with_error`` logs the trials it ends, with the reason.)
    """
    event = "prune" if outcome is Outcome.PRUNED else "finish"
    log.info(
        "%s %s in %.2f s",
        outcome,
        _where(run.claim),
        time.perf_counter() - started,
        extra={"event": event, **_fields(run.claim, worker), "state": str(outcome)},
    )
