"""The worker loop: claim a trial, train it, report every epoch, finish; stop cleanly on signals."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from types import FrameType

from sweep.config import Settings
from sweep.db import is_outage, make_engine, make_session_factory
from sweep.errors import SchemaNotReady
from sweep.schema import check_ready
from sweep.space import trial_params
from sweep.training.tasks import RunConfig, get_task
from sweep.trials import (
    Claim,
    LeaseLost,
    TrialRun,
    active_sweeps,
    claim_trial,
    reap_stale_trials,
    settle_sweep,
)

log = logging.getLogger("sweep.worker")

MAX_BACKOFF_S = 30.0


class Worker:
    """One worker process: trains one trial at a time on one device."""

    def __init__(self, settings: Settings, *, device: str = "auto", exit_when_idle: bool = False):
        self.settings = settings
        self.device = resolve_device(device)
        self.exit_when_idle = exit_when_idle
        self.name = f"{socket.gethostname()}:{os.getpid()}:{self.device}"
        self.stopping = threading.Event()
        self.engine = make_engine(settings.database_url)
        self.factory = make_session_factory(self.engine)
        self.trials_run = 0
        self._reaped_at: dict[int, float] = {}

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
        while not self.stopping.is_set():
            try:
                claim = self._next_claim()
                backoff = self.settings.poll_interval
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning(
                    "database unavailable (%s); retrying in %.0f s", _first_line(exc), backoff
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if claim is None:
                # Trials still running elsewhere may come back (their worker may die), so
                # an idle worker exits only once no sweep is active at all.
                if self.exit_when_idle and not active_sweeps(self.factory):
                    log.info("worker %s: no sweep has work; exiting", self.name)
                    break
                self.stopping.wait(self.settings.poll_interval)
                continue
            self._run_trial(claim)
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
                    log.warning("waiting for the database: %s", _first_line(exc))
                    warned = True
            self.stopping.wait(self.settings.poll_interval)
        return False

    def _next_claim(self) -> Claim | None:
        for sweep in active_sweeps(self.factory):
            # Reaping costs a few queries; once per heartbeat interval is often enough.
            now = time.monotonic()
            if now - self._reaped_at.get(sweep.id, 0.0) >= self.settings.heartbeat_interval:
                reap_stale_trials(self.settings, sweep)
                self._reaped_at[sweep.id] = now
            claim = claim_trial(self.settings, self.factory, sweep.id, self.name)
            if claim is not None:
                return claim
            settle_sweep(self.settings, self.factory, sweep.id)
        return None

    def _run_trial(self, claim: Claim) -> None:
        where = f"sweep={claim.sweep_name} trial={claim.number} attempt={claim.attempt}"
        log.info("claim %s params=%s worker=%s", where, claim.params, self.name)
        run = TrialRun(self.settings, self.factory, claim)
        config = RunConfig(
            params=trial_params(claim.params),
            epochs=claim.epochs,
            seed=claim.seed,
            penalty=claim.penalty,
            patience=claim.patience,
            device=self.device,
            options=claim.task_options,
        )
        started = time.perf_counter()
        try:
            with run:
                outcome = self._train(run, config)
            log.info("%s %s in %.2f s", outcome, where, time.perf_counter() - started)
        except LeaseLost as exc:
            log.warning("lease lost, result dropped: %s (%s)", where, exc)
        except Exception as exc:
            if is_outage(exc):  # the reaper re-queues it once the database is back
                log.error("database unreachable; abandoning %s: %s", where, _first_line(exc))
                return
            log.exception("trial failed: %s", where)
            try:
                run.fail(f"{type(exc).__name__}: {exc}", retry=True)
            except LeaseLost:
                log.warning("lease lost while failing %s", where)
            settle_sweep(self.settings, self.factory, claim.sweep_id)  # a hopeless sweep ends now
        self.trials_run += 1

    def _train(self, run: TrialRun, config: RunConfig) -> str:
        task = get_task(run.claim.task)
        for result in task.run(config):
            if run.report(result):
                pruned = math.isfinite(result.val_loss)
                return run.finish(pruned=pruned).name.lower()
            if self.stopping.is_set():
                run.release()
                return "released"
            if run.cancelled.is_set():
                run.fail("stopped: the sweep was cancelled", retry=False)
                return "cancelled"
        return run.finish().name.lower()


def resolve_device(requested: str) -> str:
    """The torch device for ``requested`` ("auto" picks CUDA when present); cpu needs no torch."""
    if requested == "cpu":
        return "cpu"
    from sweep.training.train import pick_device

    return pick_device(requested)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
