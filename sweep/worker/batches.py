"""`sweep worker --batch K`: up to K trials of one sweep trained together as one stacked model.

Each member stays its own Optuna trial, with its own lease, per-epoch report,
pruning and result; a slot freed by a finished or pruned member takes the
sweep's next trial: a search trial while the budget lasts, then its evaluation
runs (baseline, re-evaluations), which report test metrics from the same stack.
Tasks without a batched form run one trial at a time.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from sweep.scheduler.claims import Claim, claim_trial
from sweep.scheduler.evaluation import claim_evaluation
from sweep.scheduler.leases import TrialRun
from sweep.store.engine import is_outage
from sweep.store.epoch_writer import LeaseLost
from sweep.training.tasks import BatchableTask, Task
from sweep.worker.runs import (
    Outcome,
    WorkerContext,
    after_epoch,
    end_with_error,
    log_outcome,
    run_config,
    start_run,
)

if TYPE_CHECKING:
    from sweep.training.batched import BatchedRun

log = logging.getLogger("sweep.worker")


class _Members:
    """The batch's running trials by slot, each holding its lease until it is closed."""

    def __init__(self, context: WorkerContext, leases: ExitStack) -> None:
        self.context = context
        self.runs: dict[int, TrialRun] = {}
        self.started: dict[int, float] = {}
        self.closed = 0
        self.next_fill = 0.0  # when free slots may claim again (time.monotonic)
        self._leases = leases

    def admit(self, slot: int, claim: Claim) -> None:
        self.adopt(slot, self._leases.enter_context(start_run(self.context, claim, slot)))

    def adopt(self, slot: int, run: TrialRun) -> None:
        """Make an open run (its lease held) the member in ``slot``."""
        self.runs[slot] = run
        self.started[slot] = time.perf_counter()

    def close(self, slot: int, outcome: Outcome | None) -> None:
        """Give up the member's lease; log its outcome unless end_with_error already did."""
        run = self.runs.pop(slot)
        run.close()
        if outcome is not None:
            log_outcome(run, outcome, self.started[slot], self.context.name)
        del self.started[slot]
        self.closed += 1


def run_batch(context: WorkerContext, task: Task, first: TrialRun, capacity: int) -> int | None:
    """Train the open run ``first`` and more trials of its sweep (of ``task``) together; the
    number of trials run, or None if the task has no batched form."""
    if not isinstance(task, BatchableTask):
        return None
    with ExitStack() as leases:  # no lease outlives the batch, however it ends
        members = _Members(context, leases)
        members.adopt(0, first)
        try:
            batch = task.start_batch([run_config(first.claim, context.device)], capacity)
            _fill(context, batch, members, first.claim.sweep_id)
            while members.runs:
                results = batch.step_epoch()  # one host sync for every member's epoch
                for slot, result in enumerate(results):
                    if result is None or slot not in members.runs:
                        continue
                    run = members.runs[slot]
                    try:
                        last = slot not in batch.active_slots  # epochs done or patience out
                        outcome = after_epoch(run, result, context.stopping, last=last)
                    except LeaseLost as exc:  # a reaper took this member's trial
                        end_with_error(run, exc, context.name)
                        _drop(batch, slot)
                        members.close(slot, None)
                        continue
                    if outcome is not None:
                        _drop(batch, slot)
                        members.close(slot, outcome)
                if not context.stopping.is_set():
                    _fill(context, batch, members, first.claim.sweep_id)
        except Exception as exc:  # a failed step (out of memory, a bug) hits every member
            log.exception("batch failed with %d members", len(members.runs))
            for slot, run in list(members.runs.items()):
                end_with_error(run, exc, context.name)
                members.close(slot, None)
    return members.closed


def _drop(batch: BatchedRun, slot: int) -> None:
    if slot in batch.active_slots:
        batch.remove(slot)


def _fill(context: WorkerContext, batch: BatchedRun, members: _Members, sweep_id: int) -> None:
    """Claim trials of the sweep into the free slots; after finding none, wait a poll interval
    before asking again (a claim costs a transaction; an epoch may take milliseconds)."""
    if time.monotonic() < members.next_fill:
        return
    for slot in batch.free_slots:
        try:
            claim = _claim(context, sweep_id)
        except Exception as exc:
            if not is_outage(exc):
                raise
            claim = None  # the database is away: carry on with the members we have
        if claim is None:
            members.next_fill = time.monotonic() + context.settings.poll_interval
            return
        members.admit(slot, claim)
        batch.replace(slot, run_config(claim, context.device))


def _claim(context: WorkerContext, sweep_id: int) -> Claim | None:
    """The sweep's next search trial or, once its budget is handed out, evaluation run."""
    settings, factory, name = context.settings, context.factory, context.name
    claim = claim_trial(settings, factory, sweep_id, name)
    return claim if claim is not None else claim_evaluation(settings, factory, sweep_id, name)
