"""Faults with real processes: claim races, SIGKILL, SIGSTOP, SIGTERM, a PostgreSQL restart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import ClassVar

import httpx
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from benchmarks._clusters import PrivatePostgres
from sweep.service import sweeps
from sweep.store.engine import make_engine, make_session_factory, transaction
from sweep.store.migrations import upgrade
from sweep.store.optuna_storage import storage_for
from sweep.training import tasks
from sweep.training.synthetic import SyntheticTask
from sweep.training.tasks import EpochResult, RunConfig
from sweep.worker.loop import Worker
from tests.conftest import fast_settings
from tests.e2e.conftest import Processes, wait_for

CLAIM_LINE = re.compile(r"claim sweep=(\S+) trial=(\d+)")


def create_sweep(url: str, name: str, **fields: object) -> None:
    # no baseline or re-evaluation unless a test asks: they would only lengthen these tests
    evaluation = {"baseline": False, "reevaluate_top": 0, "race": False}
    spec = sweeps.SweepSpec.model_validate(
        {"name": name, "task": "synthetic", **evaluation, **fields}
    )
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as session:
        sweeps.create_sweep(session, storage_for(fast_settings(url)), spec)
    engine.dispose()


def trials(url: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def running_with_epochs(url: str, name: str, epochs: int) -> FrozenTrial | None:
    """A RUNNING trial whose claim has committed (its lease and attempt are written in the
    claim's transaction, just after Optuna's ask) with ``epochs`` reported."""
    for t in trials(url, name):
        claimed = "attempt" in t.user_attrs
        if t.state == TrialState.RUNNING and claimed and len(t.intermediate_values) >= epochs:
            return t
    return None


def wait_for_running(url: str, name: str, epochs: int, what: str) -> FrozenTrial:
    """The first trial seen RUNNING with ``epochs`` reported (as seen then: it may finish soon)."""
    seen: list[FrozenTrial] = []

    def found() -> bool:
        trial = running_with_epochs(url, name, epochs)
        seen.extend([trial] if trial is not None else [])
        return bool(seen)

    wait_for(found, 60, what)
    return seen[0]


def retries_of(url: str, name: str, number: int) -> list[FrozenTrial]:
    return [t for t in trials(url, name) if t.system_attrs.get("failed_trial") == number]


def sweep_status(url: str, name: str) -> str:
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        status = sweeps.get_sweep(session, name).status
    engine.dispose()
    return status


@pytest.mark.parametrize("workers", [16])
def test_claim_race_never_hands_a_trial_to_two_workers(
    processes, db_url: str, workers: int
) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(db_url)
    create_sweep(
        db_url, "race", n_trials=40, epochs=2, pruner="none", baseline=True, reevaluate_top=3
    )
    started = [
        procs.start("worker", "--device", "cpu", "--exit-when-idle", name=f"w{i}")
        for i in range(workers)
    ]
    for proc in started:
        assert proc.wait(timeout=240) == 0
    claims = Counter(
        (m.group(1), int(m.group(2)))
        for i in range(workers)
        for m in CLAIM_LINE.finditer(procs.log(f"w{i}"))
    )
    assert set(claims.values()) == {1}  # 0 double claims, of search and evaluation trials
    assert sum(n for (study, _), n in claims.items() if study == "race") == 40
    states = Counter(t.state for t in trials(db_url, "race"))
    assert states == {TrialState.COMPLETE: 40}  # the budget, exactly
    assert sweep_status(db_url, "race") == "completed"


def _kill_and_check_retry(
    procs: Processes,
    url: str,
    name: str,
    victim: subprocess.Popen[bytes],
    number: int,
    params: dict[str, object],
) -> None:
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    rescuer = procs.start("worker", "--device", "cpu", "--exit-when-idle", name="rescuer")

    def failed() -> bool:
        return trials(url, name)[number].state == TrialState.FAIL

    wait_for(failed, 3 + 1 + 5, "the killed worker's trial to be failed")
    assert time.monotonic() - killed_at <= 3 + 1 + 5  # grace + one reaper cycle (+ start-up)
    assert rescuer.wait(timeout=120) == 0
    retries = retries_of(url, name, number)
    assert len(retries) == 1 and retries[0].params == params
    assert retries[0].state == TrialState.COMPLETE
    states = Counter(t.state for t in trials(url, name))
    assert states[TrialState.RUNNING] == 0 and states[TrialState.FAIL] == 1
    assert sweep_status(url, name) == "completed"


def test_sigkill_mid_trial_retries_its_params_exactly_once(processes, db_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(db_url)
    create_sweep(db_url, "kill", n_trials=2, epochs=6, task_options={"epoch_seconds": 0.3})
    victim = procs.start("worker", "--device", "cpu", name="victim")
    trial = wait_for_running(db_url, "kill", 2, "a trial mid-way")
    _kill_and_check_retry(procs, db_url, "kill", victim, trial.number, trial.params)


def test_kill_between_claim_and_first_heartbeat(processes, db_url: str) -> None:  # type: ignore[no-untyped-def]
    # Killed once its claim committed, before it reported or renewed anything: the lease the
    # claim wrote goes stale. (Killed between Optuna's ask and that commit, the trial has no
    # lease and goes back to waiting: test_lifecycle's cut-off claim test.)
    procs: Processes = processes(db_url)
    create_sweep(db_url, "early", n_trials=1, epochs=2, task_options={"epoch_seconds": 2})
    victim = procs.start("worker", "--device", "cpu", name="victim")
    trial = wait_for_running(db_url, "early", 0, "a claim")
    assert not trial.intermediate_values
    _kill_and_check_retry(procs, db_url, "early", victim, trial.number, trial.params)


def test_sigstop_past_grace_then_sigcont_keeps_the_retry(processes, db_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(db_url)
    create_sweep(db_url, "stop", n_trials=1, epochs=6, task_options={"epoch_seconds": 0.3})
    sleeper = procs.start("worker", "--device", "cpu", "--exit-when-idle", name="sleeper")
    wait_for(lambda: running_with_epochs(db_url, "stop", 1) is not None, 60, "a trial mid-way")
    os.kill(sleeper.pid, signal.SIGSTOP)
    rescuer = procs.start("worker", "--device", "cpu", "--exit-when-idle", name="rescuer")
    try:
        assert rescuer.wait(timeout=120) == 0
    finally:
        os.kill(sleeper.pid, signal.SIGCONT)
    retry = retries_of(db_url, "stop", 0)
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    kept_value, kept_curve = retry[0].value, retry[0].intermediate_values
    assert sleeper.wait(timeout=60) == 0  # the late writer does not crash
    assert "lease lost" in procs.log("sleeper")
    after = trials(db_url, "stop")
    assert after[0].state == TrialState.FAIL
    assert after[retry[0].number].value == kept_value
    assert after[retry[0].number].intermediate_values == kept_curve


def test_sigterm_mid_trial_exits_0_within_an_epoch(processes, db_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(db_url)
    create_sweep(db_url, "term", n_trials=1, epochs=30, task_options={"epoch_seconds": 0.5})
    worker = procs.start("worker", "--device", "cpu", name="worker")
    wait_for(lambda: running_with_epochs(db_url, "term", 2) is not None, 60, "a trial mid-way")
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - sent < 0.5 + 2  # one epoch, plus the release
    states = Counter(t.state for t in trials(db_url, "term"))
    assert states == {TrialState.FAIL: 1, TrialState.WAITING: 1}  # released and re-queued
    resumed = procs.start("worker", "--device", "cpu", "--exit-when-idle", name="resumed")
    assert resumed.wait(timeout=120) == 0
    assert sweep_status(db_url, "term") == "completed"


def test_several_cpu_workers_under_one_supervisor(processes, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(sqlite_url)
    create_sweep(sqlite_url, "pool", n_trials=6, epochs=3, task_options={"epoch_seconds": 0.2})
    supervisor = procs.start("worker", "--workers", "2", "--exit-when-idle", name="pool")
    assert supervisor.wait(timeout=120) == 0
    pids = {t.user_attrs["worker"].split(":")[1] for t in trials(sqlite_url, "pool")}
    assert len(pids) == 2
    assert sweep_status(sqlite_url, "pool") == "completed"


def test_gpus_all_without_a_gpu_says_so(processes, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    result = processes(sqlite_url).run("worker", "--gpus", "all")
    assert result.returncode == 1
    assert "no GPU is visible" in result.stderr and "--workers N" in result.stderr


def test_postgresql_restart_under_two_workers(
    processes,  # type: ignore[no-untyped-def]
    private_postgres: PrivatePostgres,
) -> None:
    url = private_postgres.create_database("outage")  # a cluster of its own to stop
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    procs: Processes = processes(url)
    procs.env["SWEEP_GRACE_PERIOD"] = "15"  # the outage is shorter than the grace period
    try:
        api = procs.api()
        for i in range(2):
            procs.start("worker", "--device", "cpu", "--exit-when-idle", name=f"w{i}")
        create_sweep(url, "outage", n_trials=6, epochs=10, task_options={"epoch_seconds": 0.3})
        wait_for(lambda: running_with_epochs(url, "outage", 2) is not None, 60, "trials running")
        private_postgres.stop()
        try:
            during = api.get("/v1/sweeps/outage")
            assert during.status_code == 503
            assert "database" in during.json()["detail"]
            time.sleep(3)
        finally:
            private_postgres.start()

        def completed() -> bool:
            try:
                return bool(api.get("/v1/sweeps/outage").json()["status"] == "completed")
            except (httpx.HTTPError, KeyError):
                return False

        wait_for(completed, 120, "the sweep to complete after the restart")
        states = Counter(t.state for t in trials(url, "outage"))
        assert states[TrialState.FAIL] == 0  # nothing wrongly failed
        assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == 6
    finally:
        procs.stop_all()


class BreaksWhileTheDatabaseIsAway(SyntheticTask):
    """Its first run reports an epoch, stops PostgreSQL for longer than a worker retries a
    write (3 grace periods), and raises; later runs train as the synthetic task does."""

    cluster: ClassVar[PrivatePostgres | None] = None
    away_s: ClassVar[float] = 0.0
    runs: ClassVar[int] = 0
    restarts: ClassVar[list[threading.Timer]] = []

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        type(self).runs += 1
        for result in super().run(config):
            yield result
            if type(self).runs == 1 and self.cluster is not None:
                self.cluster.stop()
                back = threading.Timer(self.away_s, self.cluster.start)
                back.start()
                self.restarts.append(back)
                raise RuntimeError("the training broke while the database was away")


def test_a_trial_that_breaks_during_an_outage_leaves_the_worker_working(
    private_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failing the trial cannot reach the database: the worker leaves it to the reaper and
    carries on once PostgreSQL is back, instead of exiting."""
    url = private_postgres.create_database("broken")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = fast_settings(url)
    name = "breaks-while-the-database-is-away"
    monkeypatch.setitem(tasks._registered(), name, f"{__name__}:BreaksWhileTheDatabaseIsAway")
    monkeypatch.setattr(BreaksWhileTheDatabaseIsAway, "cluster", private_postgres)
    monkeypatch.setattr(BreaksWhileTheDatabaseIsAway, "away_s", settings.grace_period * 3 + 2.0)
    create_sweep(url, "broken", n_trials=1, epochs=2, task=name)
    try:
        assert Worker(settings, device="cpu", exit_when_idle=True, threads=1).run() == 0
    finally:
        for back in BreaksWhileTheDatabaseIsAway.restarts:
            back.join()
    first, retry = sorted(trials(url, "broken"), key=lambda t: t.number)
    assert (first.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.params == first.params and sweep_status(url, "broken") == "completed"
