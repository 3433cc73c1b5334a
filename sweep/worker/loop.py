"""The worker loop: claim a trial, train it, report every epoch, finish; stop cleanly on signals."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from types import FrameType

from sweep.config import Settings
from sweep.errors import SchemaNotReady, first_line
from sweep.scheduler.claims import Claim, claim_trial
from sweep.scheduler.evaluation import claim_evaluation
from sweep.scheduler.leases import TrialRun
from sweep.scheduler.pruning import PruningViews
from sweep.scheduler.settling import reap_stale_trials, settle_sweep
from sweep.store.engine import Pooling, is_outage, make_engine, make_session_factory
from sweep.store.epoch_writer import EpochWriter, LeaseLost
from sweep.store.migrations import check_ready
from sweep.store.work import SweepWork, sweeps_by_share
from sweep.training.tasks import RunConfig, Task, UnknownTaskError, get_task
from sweep.worker.batches import run_batch
from sweep.worker.runs import (
    Outcome,
    WorkerContext,
    after_epoch,
    end_with_error,
    log_outcome,
    run_config,
    start_run,
)

log = logging.getLogger("sweep.worker")

MAX_BACKOFF_S = 30.0
CHOOSE_AGAIN = 4  # fair-share choices a poll makes before it waits for the next one
# How long a worker leaves alone a sweep whose task is not installed here before it
# looks again (the package may be installed meanwhile; other workers may have it).
MISSING_TASK_RETRY_S = 60.0


class IdleBackoff:
    """How long an idle worker waits before asking for work again.

    The wait doubles from ``first`` up to ``most`` while nothing is claimable and
    starts over after a claim; each wait is drawn from [wait/2, wait], so a fleet of
    workers started together does not poll the database in step.
    """

    def __init__(self, first: float, most: float, rng: random.Random | None = None) -> None:
        self.first = first
        self.most = max(first, most)
        self._wait = first
        self._rng = rng or random.Random()

    def next_wait(self) -> float:
        """Seconds to wait now; the next call waits up to twice as long."""
        wait = self._wait * self._rng.uniform(0.5, 1.0)
        self._wait = min(self._wait * 2, self.most)
        return wait

    def reset(self) -> None:
        """A trial was claimed: the next idle wait is short again."""
        self._wait = self.first


class Worker:
    """One worker process: trains one trial at a time on one device."""

    def __init__(
        self,
        settings: Settings,
        *,
        device: str = "auto",
        exit_when_idle: bool = False,
        threads: int | None = None,
        batch: int = 1,
    ):
        self.settings = settings
        self.batch = batch  # trials of one sweep trained together as one stacked model
        # A stacked batch is one large model that does use the cores (2.3-3.9x at K=16 on
        # 2 threads, 1.9x on one); a single small trial does not.
        set_torch_threads(threads or (os.cpu_count() if batch > 1 else None))
        self.device = resolve_device(device)
        self.exit_when_idle = exit_when_idle
        self.name = f"{socket.gethostname()}:{os.getpid()}:{self.device}"
        self.stopping = threading.Event()
        self.engine = make_engine(settings.database_url, Pooling.of(settings))
        self.factory = make_session_factory(self.engine)
        self.trials_run = 0
        # one writer and one set of pruning views for all the trials this worker runs
        self.writer = EpochWriter(
            self.factory,
            flush_interval=settings.flush_interval,
            heartbeat_interval=settings.heartbeat_interval,
        )
        views = PruningViews(self.factory, settings.flush_interval)
        self.context = WorkerContext(
            settings, self.factory, self.name, self.device, self.stopping, self.writer, views
        )
        self._reaped_at: dict[int, float] = {}
        self._active_seen = True  # whether the last poll saw a queued or running sweep
        self._task_missing_until: dict[int, float] = {}  # sweep id → when to try it again

    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        """Finish or release the current trial at the next epoch, then exit."""
        if not self.stopping.is_set():
            log.info("worker %s: %s received, stopping", self.name, signal.Signals(signum).name)
        self.stopping.set()

    def run(self) -> int:
        """Work until stopped (or idle, with exit_when_idle); returns the exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        if not self._wait_for_schema():
            return 0
        log.info("worker %s started on %s", self.name, self.settings.safe_database_url)
        backoff = self.settings.poll_interval
        idle = IdleBackoff(self.settings.poll_interval, self.settings.max_poll_interval)
        while not self.stopping.is_set():
            try:
                claim = self._next_claim()
                backoff = self.settings.poll_interval
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning(
                    "database unavailable (%s); retrying in %.0f s", first_line(exc), backoff
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if claim is None:
                # Trials still running elsewhere may come back (their worker may die), so
                # an idle worker exits only once no sweep is active at all.
                if self.exit_when_idle and not self._active_seen:
                    log.info("worker %s: no sweep has work; exiting", self.name)
                    break
                self.stopping.wait(idle.next_wait())
                continue
            idle.reset()
            try:
                self.trials_run += self._run_claim(claim)
            except Exception as exc:
                # The trial's own path already handled what it could; an outage or a lost
                # lease that reached here leaves the trial to the reaper, not the worker dead.
                if not (is_outage(exc) or isinstance(exc, LeaseLost)):
                    raise
                log.warning(
                    "gave up sweep=%s trial=%d (%s); the reaper re-queues it",
                    claim.study,
                    claim.number,
                    first_line(exc),
                    extra={"event": "abandon", "sweep": claim.sweep_name, "trial": claim.number},
                )
                self.stopping.wait(backoff)
        self.writer.close()
        self.engine.dispose()
        return 0

    def _wait_for_schema(self) -> bool:
        warned = False
        while not self.stopping.is_set():
            try:
                check_ready(self.engine)
                return True
            except Exception as exc:
                if not (isinstance(exc, SchemaNotReady) or is_outage(exc)):
                    raise
                if not warned:
                    log.warning("waiting for the database: %s", first_line(exc))
                    warned = True
            self.stopping.wait(self.settings.poll_interval)
        return False

    def _run_claim(self, claim: Claim) -> int:
        """Train the claimed trial (with more of its sweep's, batched); how many trials ran.

        The lease starts first: importing a task's package (torch) can take longer than
        the grace period, and a trial must not look abandoned meanwhile.
        """
        started = time.perf_counter()
        with start_run(self.context, claim) as run:
            task = self._task_of(run)
            if task is None:
                return 0
            if self.batch > 1:
                batched = run_batch(self.context, task, run, self.batch)
                if batched is not None:
                    return batched
            self._run_trial(task, run, started)
        return 1

    def _task_of(self, run: TrialRun) -> Task | None:
        """The claim's task; None, with the trial given back, if it cannot be loaded here."""
        claim = run.claim
        try:
            return get_task(claim.task)
        except (UnknownTaskError, ImportError) as exc:
            log.error(
                "task %r is not installed on this worker (%s); released sweep=%s trial=%d "
                "back to the queue, not counted as an attempt; this worker skips the sweep "
                "for %.0f s. Install the task's package here, or run its sweeps on workers "
                "that have it",
                claim.task,
                first_line(exc),
                claim.study,
                claim.number,
                MISSING_TASK_RETRY_S,
                extra={
                    "event": "release",
                    "sweep": claim.sweep_name,
                    "trial": claim.number,
                    "worker": self.name,
                    "task": claim.task,
                },
            )
            run.release(f"task {claim.task!r} is not installed on worker {self.name}; re-queued")
            self._task_missing_until[claim.sweep_id] = time.monotonic() + MISSING_TASK_RETRY_S
            return None

    def _next_claim(self) -> Claim | None:
        """A trial of the first sweep in fair-share order that hands one out (sweep.store.work).

        One query when there is nothing to do; reaping only where a heartbeat is stale.
        A worker that waited for a sweep's claim lock while another claimed from it
        chooses again, so workers polling at the same moment spread out.
        """
        for _ in range(CHOOSE_AGAIN):
            found = sweeps_by_share(self.factory)
            self._active_seen = bool(found)
            self._reap_stale(found)
            claim, stale = self._claim_first(found)
            if claim is not None or not stale:
                return claim
        return None

    def _reap_stale(self, found: list[SweepWork]) -> None:
        now = time.monotonic()
        for work in found:
            sweep = work.sweep
            stale = work.stale_for is not None and work.stale_for > self.settings.grace_period
            # at most once per heartbeat interval, in case Optuna's reaper sees it differently
            if (
                stale
                and now - self._reaped_at.get(sweep.id, 0.0) >= self.settings.heartbeat_interval
            ):
                reap_stale_trials(self.settings, self.factory, sweep)
                self._reaped_at[sweep.id] = now

    def _claim_first(self, found: list[SweepWork]) -> tuple[Claim | None, bool]:
        """(a claim, or None; whether a sweep refused because the choice went stale)."""
        for work in found:
            if not (work.claimable or work.needs_settling):
                continue
            if time.monotonic() < self._task_missing_until.get(work.sweep.id, 0.0):
                continue
            sweep_id, seen = work.sweep.id, work.running
            claim = None
            if work.claimable:
                claim = claim_trial(
                    self.settings, self.factory, sweep_id, self.name, running_seen=seen
                )
            if claim is None:  # the budget is handed out: baseline and re-evaluations next
                claim = claim_evaluation(
                    self.settings, self.factory, sweep_id, self.name, running_seen=seen
                )
            if claim is not None:
                return claim, False
            if work.needs_settling:
                settle_sweep(self.settings, self.factory, sweep_id)
            elif work.claimable:
                return None, True
        return None, False

    def _run_trial(self, task: Task, run: TrialRun, started: float) -> None:
        try:
            outcome = self._train(task, run, run_config(run.claim, self.device))
        except Exception as exc:
            outcome = end_with_error(run, exc, self.name)
            if outcome is Outcome.FAIL:  # a hopeless sweep ends now
                settle_sweep(self.settings, self.factory, run.claim.sweep_id)
        else:
            log_outcome(run, outcome, started, self.name)

    def _train(self, task: Task, run: TrialRun, config: RunConfig) -> Outcome:
        for result in task.run(config):
            log.debug(
                "report sweep=%s trial=%d epoch=%d val_loss=%.6g",
                run.claim.sweep_name,
                run.claim.number,
                result.epoch,
                result.val_loss,
                extra={
                    "event": "report",
                    "sweep": run.claim.sweep_name,
                    "trial": run.claim.number,
                    "worker": self.name,
                    "epoch": result.epoch,
                    "val_loss": result.val_loss,
                    "train_loss": result.train_loss,
                },
            )
            outcome = after_epoch(run, result, self.stopping, last=False)
            if outcome is not None:
                return outcome
        return Outcome(run.finish().name.lower())


def set_torch_threads(threads: int | None) -> None:
    """Give torch ``threads`` intra-op threads (default: OMP_NUM_THREADS, else 1).

    The seed's MLP gains little from more threads (0.62 s vs 0.70 s a trial with 2
    vs 1 on an idle 2-core CPU) but loses badly when the cores are busy (55 s vs
    2.7 s measured): more processes (`--workers N`) scale, more threads do not.
    """
    count = threads or int(os.environ.get("OMP_NUM_THREADS", "1"))
    os.environ["OMP_NUM_THREADS"] = str(count)  # read by torch when it is first imported
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)


def resolve_device(requested: str) -> str:
    """The torch device for ``requested`` ("auto" picks CUDA when present); cpu needs no torch."""
    if requested == "cpu":
        return "cpu"
    from sweep.training.train import pick_device

    return pick_device(requested)
