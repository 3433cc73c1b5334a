"""Which sweep a free worker serves: priority, fair share across tokens, max_concurrent.

The first tests claim in this process through the worker's own choice
(``Worker._next_claim``), so the order is exact; the last ones run real worker
processes and check what they did from Optuna's trial timestamps.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import optuna
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.spec import SweepScheduling
from sweep.scheduler.claims import Claim
from sweep.service import sweeps
from sweep.store.engine import transaction
from sweep.store.optuna_storage import storage_for
from sweep.store.work import sweeps_by_share
from sweep.worker.loop import Worker
from tests.helpers import make_sweep

FORK = multiprocessing.get_context("fork")
QUIET = {"baseline": False, "reevaluate_top": 0, "pruner": "none"}  # search trials only


def _worker(settings: Settings) -> Worker:
    return Worker(settings, device="cpu")


def _claims(worker: Worker, n: int) -> list[Claim | None]:
    return [worker._next_claim() for _ in range(n)]


def _names(claims: list[Claim | None]) -> list[str | None]:
    return [c.sweep_name if c else None for c in claims]


def test_the_highest_priority_gets_every_trial_first(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(settings, factory, "low", n_trials=3, **QUIET)
    make_sweep(settings, factory, "high", n_trials=3, priority=10, **QUIET)
    worker = _worker(settings)
    assert _names(_claims(worker, 7)) == ["high"] * 3 + ["low"] * 3 + [None]
    worker.engine.dispose()


def test_fair_share_across_tokens_not_sweeps(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    for name in ("a1", "a2", "a3"):
        make_sweep(settings, factory, name, n_trials=10, created_by=1, **QUIET)
    make_sweep(settings, factory, "b", n_trials=10, created_by=2, **QUIET)
    worker = _worker(settings)
    claimed = Counter(_names(_claims(worker, 8)))
    assert claimed["b"] == 4  # the token with one sweep gets half the workers
    assert sorted(claimed[n] for n in ("a1", "a2", "a3")) == [1, 1, 2]
    worker.engine.dispose()


def test_max_concurrent_caps_running_trials_until_changed(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(settings, factory, "capped", n_trials=10, max_concurrent=2, **QUIET)
    make_sweep(settings, factory, "open", n_trials=10, **QUIET)
    worker = _worker(settings)
    claimed = Counter(_names(_claims(worker, 8)))
    assert claimed == {"capped": 2, "open": 6}
    with transaction(factory) as session:
        sweeps.change_scheduling(session, "capped", SweepScheduling(max_concurrent=3))
    assert _names(_claims(worker, 1)) == ["capped"]
    worker.engine.dispose()


def test_an_idle_poll_is_one_query(settings: Settings, factory: sessionmaker[Session]) -> None:
    for i in range(5):
        make_sweep(settings, factory, f"s{i}", n_trials=5, max_concurrent=1, **QUIET)
    worker = _worker(settings)
    assert len([c for c in _claims(worker, 5) if c]) == 5  # each sweep at its cap now
    statements: list[str] = []
    event.listen(worker.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert worker._next_claim() is None
    assert len(statements) == 1, statements
    work = sweeps_by_share(worker.factory)
    assert [w.running for w in work] == [1] * 5 and not any(w.claimable for w in work)
    worker.engine.dispose()


# --- real processes -----------------------------------------------------------------


def _run_worker(settings: Settings) -> None:
    # A forked process opens its own connections (see test_races).
    storage_for(settings).engine.dispose(close=False)
    Worker(settings, device="cpu", exit_when_idle=True).run()


def _run_workers(
    settings: Settings, n: int, meanwhile: Callable[[], object] = lambda: None
) -> None:
    procs = [FORK.Process(target=_run_worker, args=(settings,)) for _ in range(n)]
    for proc in procs:
        proc.start()
    meanwhile()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0


def _intervals(settings: Settings, name: str) -> list[tuple[datetime, datetime]]:
    study = optuna.load_study(study_name=name, storage=storage_for(settings))
    runs = [(t.datetime_start, t.datetime_complete) for t in study.trials]
    assert all(start and end for start, end in runs), "every trial finished"
    return runs  # type: ignore[return-value]


def _most_at_once(runs: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs])  # ends first on ties
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_max_concurrent_holds_with_eight_workers(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    options = {"task_options": {"epoch_seconds": 0.05}, **QUIET}
    make_sweep(settings, factory, "capped", n_trials=6, max_concurrent=2, **options)
    _run_workers(settings, 8)
    runs = _intervals(settings, "capped")
    assert len(runs) == 6
    assert _most_at_once(runs) == 2


def test_priority_takes_every_worker_until_its_budget_is_handed_out(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    options = {"task_options": {"epoch_seconds": 0.05}, **QUIET}
    make_sweep(settings, factory, "low", n_trials=4, **options)
    make_sweep(settings, factory, "high", n_trials=8, priority=10, **options)
    _run_workers(settings, 4)
    high = [start for start, _ in _intervals(settings, "high")]
    low = [start for start, _ in _intervals(settings, "low")]
    assert len(high) == 8 and len(low) == 4
    assert min(low) > max(high)  # the older sweep waited for the whole budget of the newer


def test_two_tokens_share_four_workers(settings: Settings, factory: sessionmaker[Session]) -> None:
    # Trials long against a claim (which takes up to 0.5 s on this busy machine), so four
    # workers do run at once and the running counts the choice is made by mean something.
    options = {"task_options": {"epoch_seconds": 0.25}, **QUIET}
    for name in ("a1", "a2", "a3"):
        make_sweep(settings, factory, name, n_trials=3, created_by=1, **options)
    make_sweep(settings, factory, "b", n_trials=9, created_by=2, **options)
    _run_workers(settings, 4)
    starts = {name: [s for s, _ in _intervals(settings, name)] for name in ("a1", "a2", "a3", "b")}
    token_a = sorted(s for name in ("a1", "a2", "a3") for s in starts[name])
    token_b = sorted(starts["b"])
    # While both tokens had trials to hand out, each got about half of the trials started
    # (oldest first would have given token a's three sweeps all nine before b's first).
    both_busy_until = min(token_a[-1], token_b[-1])
    a = sum(s <= both_busy_until for s in token_a)
    b = sum(s <= both_busy_until for s in token_b)
    assert abs(a - b) <= 2, (a, b)


def _running_at(runs: list[tuple[datetime, datetime]], moment: datetime) -> int:
    return sum(start <= moment < end for start, end in runs)


def test_a_sweep_queued_later_gets_workers_at_once(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    options = {"task_options": {"epoch_seconds": 0.25}, "epochs": 4, **QUIET}
    make_sweep(settings, factory, "first", n_trials=16, **options)

    def queue_the_second() -> None:
        # Once the first sweep has every worker (a fixed sleep raced slow worker start-up).
        first = optuna.load_study(study_name="first", storage=storage_for(settings))
        deadline = time.monotonic() + 60
        while len(first.get_trials(deepcopy=False)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        make_sweep(settings, factory, "second", n_trials=12, **options)

    _run_workers(settings, 4, meanwhile=queue_the_second)
    first, second = _intervals(settings, "first"), _intervals(settings, "second")
    # From the second sweep's first trial (oldest-first would have made it wait for all
    # twelve of the first's), until either runs out of trials to hand out: the workers
    # freed one by one go to the sweep with fewer running, so the counts stay within one.
    joined = min(start for start, _ in second)
    both_busy_until = min(max(s for s, _ in first), max(s for s, _ in second))
    assert joined < max(s for s, _ in first), "the second sweep waited for the first's budget"
    moments = sorted(s for s, _ in first + second if joined < s <= both_busy_until)
    gaps = [abs(_running_at(first, m) - _running_at(second, m)) for m in moments]
    assert moments and max(gaps) <= 1, gaps
