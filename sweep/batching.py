"""`sweep worker --batch K`: up to K trials of one sweep trained together as one stacked model.

Each member stays its own Optuna trial, with its own lease, per-epoch report,
pruning and result; a slot freed by a finished or pruned member takes the
sweep's next trial. Tasks without a batched form run one trial at a time.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from sweep.db import is_outage
from sweep.space import trial_params
from sweep.training.tasks import EpochResult, RunConfig, get_task
from sweep.trials import Claim, LeaseLost, TrialRun, claim_trial

if TYPE_CHECKING:
    from sweep.training.batched import BatchedRun
    from sweep.worker import Worker

log = logging.getLogger("sweep.worker")


class BatchableTask(Protocol):
    def start_batch(self, configs: list[RunConfig], capacity: int) -> BatchedRun: ...


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


def run_batch(worker: Worker, first: Claim, capacity: int) -> bool:
    """Train ``first`` and more trials of its sweep together; False if the task cannot batch."""
    task: Any = get_task(first.task)
    if not hasattr(task, "start_batch"):
        return False
    members: dict[int, TrialRun] = {}
    started: dict[int, float] = {}
    batch: BatchedRun = task.start_batch([run_config(first, worker.device)], capacity)
    _admit(worker, members, started, 0, first)
    _fill(worker, batch, members, started, first.sweep_id)
    try:
        while members:
            results = batch.step_epoch()  # one host sync for every member's epoch
            for slot, result in enumerate(results):
                if result is not None and slot in members:
                    outcome = _member_epoch(worker, batch, members[slot], slot, result)
                    if outcome is not None:
                        _close(worker, members, started, slot, outcome)
            if not worker.stopping.is_set():
                _fill(worker, batch, members, started, first.sweep_id)
    except Exception as exc:  # a failed step (out of memory, a bug) hits every member
        log.exception("batch failed with %d members", len(members))
        for slot, run in list(members.items()):
            try:
                if not is_outage(exc):
                    run.fail(f"{type(exc).__name__}: {exc}", retry=True)
            except LeaseLost:
                pass
            _close(worker, members, started, slot, "failed")
    return True


def _member_epoch(
    worker: Worker, batch: BatchedRun, run: TrialRun, slot: int, result: EpochResult
) -> str | None:
    """Report one member's epoch; the outcome if the member is done, else None."""
    try:
        if run.report(result):
            batch.remove(slot)
            return run.finish(pruned=math.isfinite(result.val_loss)).name.lower()
        if slot not in batch.active_slots:  # its epochs are done, or its patience ran out
            return run.finish().name.lower()
        if worker.stopping.is_set():
            batch.remove(slot)
            run.release()
            return "released"
        if run.cancelled.is_set():
            batch.remove(slot)
            run.fail("stopped: the sweep was cancelled", retry=False)
            return "cancelled"
    except LeaseLost as exc:
        if slot in batch.active_slots:
            batch.remove(slot)
        log.warning("lease lost, result dropped: trial %s (%s)", run.claim.number, exc)
        return "lost"
    return None


def _fill(
    worker: Worker,
    batch: BatchedRun,
    members: dict[int, TrialRun],
    started: dict[int, float],
    sweep_id: int,
) -> None:
    for slot in batch.free_slots:
        try:
            claim = claim_trial(worker.settings, worker.factory, sweep_id, worker.name)
        except Exception as exc:
            if not is_outage(exc):
                raise
            return  # the database is away: carry on with the members we have
        if claim is None:
            return
        batch.replace(slot, run_config(claim, worker.device))
        _admit(worker, members, started, slot, claim)


def _admit(
    worker: Worker,
    members: dict[int, TrialRun],
    started: dict[int, float],
    slot: int,
    claim: Claim,
) -> None:
    log.info(
        "claim sweep=%s trial=%d attempt=%d params=%s worker=%s slot=%d",
        claim.sweep_name,
        claim.number,
        claim.attempt,
        claim.params,
        worker.name,
        slot,
        extra={
            "event": "claim",
            "sweep": claim.sweep_name,
            "trial": claim.number,
            "worker": worker.name,
            "attempt": claim.attempt,
            "slot": slot,
        },
    )
    members[slot] = TrialRun(worker.settings, worker.factory, claim).__enter__()
    started[slot] = time.perf_counter()


def _close(
    worker: Worker,
    members: dict[int, TrialRun],
    started: dict[int, float],
    slot: int,
    outcome: str,
) -> None:
    run = members.pop(slot)
    run.__exit__(None, None, None)
    log.info(
        "%s sweep=%s trial=%d in %.2f s",
        outcome,
        run.claim.sweep_name,
        run.claim.number,
        time.perf_counter() - started.pop(slot),
        extra={
            "event": "prune" if outcome == "pruned" else "finish",
            "sweep": run.claim.sweep_name,
            "trial": run.claim.number,
            "worker": worker.name,
            "state": outcome,
        },
    )
    worker.trials_run += 1
