"""The scheduling core: budget, cancellation, failures and retries, with the synthetic task."""

from __future__ import annotations

import logging

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.scheduler.claims import claim_trial
from sweep.scheduler.leases import TrialRun
from sweep.scheduler.settling import settle_sweep
from sweep.service import sweeps
from sweep.store.engine import transaction
from sweep.store.tables import Sweep
from sweep.training.tasks import EpochResult, get_task
from sweep.worker.loop import Worker
from tests.helpers import make_sweep, run_worker


def states(settings: Settings, name: str) -> list[TrialState]:
    study = optuna.load_study(study_name=name, storage=settings.database_url)
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_claims_stop_at_the_budget(settings: Settings, factory: sessionmaker[Session]) -> None:
    sweep_id = make_sweep(settings, factory, "budget", n_trials=3)
    claims = [claim_trial(settings, factory, sweep_id, "w") for _ in range(5)]
    numbers = [c.number for c in claims if c is not None]
    assert numbers == [0, 1, 2]  # three configurations, each handed out once
    assert states(settings, "budget") == [TrialState.RUNNING] * 3


def test_a_claim_marks_the_sweep_running(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "starts", n_trials=1)
    claim_trial(settings, factory, sweep_id, "w")
    with factory() as session:
        sweep = sweeps.get_sweep(session, "starts")
        assert sweep.status == "running" and sweep.started_at is not None


def test_cancel_stops_a_running_trial_at_the_next_epoch(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "cancel-me", n_trials=2)
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    worker = Worker(settings, device="cpu", exit_when_idle=True)
    with TrialRun(settings, factory, claim) as run:
        run.report(EpochResult(0, 1.0, 1.0, 0.5))
        with transaction(factory) as session:
            sweeps.control_sweep(session, "cancel-me", "cancel")
        # the worker's epoch writer notices within one heartbeat interval
        assert run.cancelled.wait(settings.heartbeat_interval * 3)
        assert worker._train(get_task(claim.task), run, _config(claim)) == "cancelled"
    trial = optuna.load_study(study_name="cancel-me", storage=settings.database_url).trials[0]
    assert trial.state == TrialState.FAIL
    assert "cancelled" in trial.user_attrs["error"]
    assert len(trial.user_attrs["curves"]["val_loss"]) == 2  # the epoch before, and one more


def _config(claim):  # type: ignore[no-untyped-def]
    from sweep.definition.space import trial_params
    from sweep.training.tasks import RunConfig

    return RunConfig(params=trial_params(claim.params), epochs=claim.epochs, seed=claim.seed)


def test_a_task_that_always_raises_ends_the_sweep_failed(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(settings, factory, "broken", n_trials=2, max_attempts=3, task_options={"fail": True})
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    trial_states = states(settings, "broken")
    assert trial_states == [TrialState.FAIL] * 6  # 2 configurations × 3 attempts, no more
    study = optuna.load_study(study_name="broken", storage=settings.database_url)
    attempts = [t.user_attrs["attempt"] for t in study.trials]
    assert sorted(attempts) == [1, 1, 2, 2, 3, 3]
    with factory() as session:
        sweep = sweeps.get_sweep(session, "broken")
        assert sweep.status == "failed"
        assert "synthetic task asked to fail" in (sweep.error or "")


def test_a_hopeless_sweep_fails_before_spending_its_budget(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(
        settings, factory, "hopeless", n_trials=40, max_attempts=2, task_options={"fail": True}
    )
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0
    assert len(states(settings, "hopeless")) == 3 * 2  # three configurations × two attempts
    with factory() as session:
        sweep = sweeps.get_sweep(session, "hopeless")
        assert sweep.status == "failed"
        assert "no trial succeeded in 6 attempts" in (sweep.error or "")


def test_nan_loss_fails_the_trial_without_retry(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(settings, factory, "nan", n_trials=1, task_options={"nan_at_epoch": 1})
    Worker(settings, device="cpu", exit_when_idle=True).run()
    study = optuna.load_study(study_name="nan", storage=settings.database_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert "NaN" in study.trials[0].user_attrs["error"]


def test_released_trial_is_requeued_with_the_same_params(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "release", n_trials=1)
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    TrialRun(settings, factory, claim).release()
    again = claim_trial(settings, factory, sweep_id, "w")
    assert again is not None and again.params == claim.params
    assert again.attempt == 1  # a release is not a failed attempt
    assert again.seed == claim.seed
    assert claim_trial(settings, factory, sweep_id, "w") is None  # budget still 1
    settle_sweep(settings, factory, sweep_id)


def test_a_worker_without_the_task_gives_the_trial_back_as_the_same_attempt(
    settings: Settings, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    sweep_id = make_sweep(settings, factory, "needs-plugin", n_trials=1)
    with transaction(factory) as session:  # as if the plug-in were installed only elsewhere
        sweep_row = session.get(Sweep, sweep_id)
        assert sweep_row is not None
        sweep_row.task = "not-installed-here"
    worker = Worker(settings, device="cpu")
    claim = worker._next_claim()
    assert claim is not None

    with caplog.at_level(logging.ERROR, logger="sweep.worker"):
        assert worker._run_claim(claim) == 0  # nothing trained
    assert "task 'not-installed-here' is not installed on this worker" in caplog.text
    assert "released sweep=needs-plugin trial=0 back to the queue" in caplog.text
    study = optuna.load_study(study_name="needs-plugin", storage=settings.database_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert "not installed on worker" in study.trials[0].user_attrs["error"]
    assert worker._next_claim() is None  # it leaves the sweep to workers that have the task

    with transaction(factory) as session:  # a worker that has it takes the same configuration
        sweep_row = session.get(Sweep, sweep_id)
        assert sweep_row is not None
        sweep_row.task = "synthetic"
    run_worker(settings)
    study = optuna.load_study(study_name="needs-plugin", storage=settings.database_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == claim.params
    assert study.trials[1].user_attrs["attempt"] == claim.attempt  # not counted as an attempt
    with factory() as session:
        sweep_row = session.get(Sweep, sweep_id)
        assert sweep_row is not None and sweep_row.status == "completed"
