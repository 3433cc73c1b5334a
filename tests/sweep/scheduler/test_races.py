"""State changes that cannot race: real processes claim, settle, fail and cancel at once.

Each round starts two processes' moves together at a barrier; over many rounds a
read-then-write status change, or a failed trial seen without its retry, shows up.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.evaluation import STAGE_KEY, Stage, evaluation_study_name
from sweep.errors import InvalidTransition
from sweep.scheduler.claims import claim_trial
from sweep.scheduler.evaluation import claim_evaluation
from sweep.scheduler.leases import TrialRun
from sweep.scheduler.settling import settle_sweep
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.optuna_storage import storage_for
from sweep.store.tables import Sweep
from sweep.training.tasks import EpochResult
from tests.helpers import make_sweep

ROUNDS = 25
FORK = multiprocessing.get_context("fork")


def _own_factory(settings: Settings) -> sessionmaker[Session]:
    # A forked process opens its own connections; the parent's pooled ones (the process-wide
    # Optuna storage's too) are left alone, as SQLAlchemy advises after a fork.
    storage_for(settings).engine.dispose(close=False)
    return make_session_factory(make_engine(settings.database_url))


def _cancel_each(settings: Settings, names: list[str], barrier: Any, out: Any) -> None:
    factory = _own_factory(settings)
    for name in names:
        barrier.wait()
        try:
            with transaction(factory) as session:
                sweeps.control_sweep(session, name, "cancel")
            out.put((name, True))
        except InvalidTransition:
            out.put((name, False))


def _each_round(
    settings: Settings, ids: list[int], barrier: Any, move: Callable[..., object]
) -> None:
    factory = _own_factory(settings)
    for sweep_id in ids:
        barrier.wait()
        move(settings, factory, sweep_id)


def _claim(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> None:
    claim_trial(settings, factory, sweep_id, "racer")


def _race_cancel_against(
    settings: Settings, factory: sessionmaker[Session], ids: list[int], move: Callable[..., object]
) -> dict[str, str]:
    with factory() as session:
        names = [session.get(Sweep, i).name for i in ids]  # type: ignore[union-attr]
    barrier = FORK.Barrier(2)
    out = FORK.Queue()
    procs = [
        FORK.Process(target=_cancel_each, args=(settings, names, barrier, out)),
        FORK.Process(target=_each_round, args=(settings, ids, barrier, move)),
    ]
    for proc in procs:
        proc.start()
    cancelled = dict(out.get(timeout=120) for _ in names)
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    with factory() as session:
        final = {name: sweeps.get_sweep(session, name).status for name in names}
    # A cancel that was answered "done" is never undone by the other process.
    assert all(final[name] == "cancelled" for name, ok in cancelled.items() if ok), final
    return final


def test_a_cancel_is_never_overwritten_by_a_claim(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    ids = [make_sweep(settings, factory, f"claim-race-{i}", n_trials=2) for i in range(ROUNDS)]
    _race_cancel_against(settings, factory, ids, _claim)


def _settleable(settings: Settings, factory: sessionmaker[Session], name: str) -> int:
    """A sweep whose only trial has completed and whose evaluation is planned: settling
    would complete it now."""
    sweep_id = make_sweep(
        settings, factory, name, n_trials=1, baseline=False, reevaluate_top=0, epochs=1
    )
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    with TrialRun(settings, factory, claim) as run:
        run.report(EpochResult(0, 0.5, 0.6, 0.8))
        run.finish()
    assert claim_evaluation(settings, factory, sweep_id, "w") is None  # plans: nothing to do
    return sweep_id


def test_a_cancel_is_never_overwritten_by_settling(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    ids = [_settleable(settings, factory, f"settle-race-{i}") for i in range(ROUNDS)]
    final = _race_cancel_against(settings, factory, ids, settle_sweep)
    assert set(final.values()) <= {"cancelled", "completed"}


def _fail_with_retry(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> None:
    claim = claim_trial(settings, factory, sweep_id, "failer")
    assert claim is not None
    with TrialRun(settings, factory, claim) as run:
        run.report(EpochResult(0, 0.5, 0.6, 0.8))
        run.fail("RuntimeError: out of memory", retry=True)


def _settle_until_done(settings: Settings, ids: list[int], barrier: Any, failed: Any) -> None:
    factory = _own_factory(settings)
    for sweep_id in ids:
        barrier.wait()
        while True:  # what other workers and the API's reaper do all the time
            done = failed.is_set()
            claim_evaluation(settings, factory, sweep_id, "settler")
            settle_sweep(settings, factory, sweep_id)
            if done:
                break
        barrier.wait()


def _fail_each(settings: Settings, ids: list[int], barrier: Any, failed: Any) -> None:
    factory = _own_factory(settings)
    for sweep_id in ids:
        failed.clear()
        barrier.wait()
        _fail_with_retry(settings, factory, sweep_id)
        failed.set()
        barrier.wait()


def test_a_failed_trial_and_its_retry_are_seen_together(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    ids = [
        make_sweep(settings, factory, f"retry-race-{i}", n_trials=1, baseline=False,
                   reevaluate_top=0, epochs=1)
        for i in range(ROUNDS)
    ]  # fmt: skip
    barrier, failed = FORK.Barrier(2), FORK.Event()
    procs = [
        FORK.Process(target=_fail_each, args=(settings, ids, barrier, failed)),
        FORK.Process(target=_settle_until_done, args=(settings, ids, barrier, failed)),
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
        assert proc.exitcode == 0
    storage = settings.database_url
    for i in range(len(ids)):
        name = f"retry-race-{i}"
        with factory() as session:
            assert sweeps.get_sweep(session, name).status == "running", name
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], name
        evaluation = optuna.load_study(study_name=evaluation_study_name(name), storage=storage)
        assert evaluation.user_attrs[STAGE_KEY] == Stage.SEARCH, name


def test_on_sqlite_the_claim_lock_is_held_until_the_claim_commits(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=sqlite_url)
    factory = make_session_factory(make_engine(sqlite_url))
    sweep_id = make_sweep(settings, factory, "held", n_trials=2)
    lock_file = sqlite_url.removeprefix("sqlite:///") + ".claim-lock"
    held_at_commit: list[bool] = []

    def lock_is_held(_session: Session) -> None:
        fd = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a second worker's try
            fcntl.flock(fd, fcntl.LOCK_UN)
            held_at_commit.append(False)
        except BlockingIOError:
            held_at_commit.append(True)
        finally:
            os.close(fd)

    event.listen(Session, "after_commit", lock_is_held)
    try:
        assert claim_trial(settings, factory, sweep_id, "w") is not None
    finally:
        event.remove(Session, "after_commit", lock_is_held)
    # every commit of the claim, Optuna's and the sweep row's (the last), under the lock
    assert held_at_commit and all(held_at_commit)
