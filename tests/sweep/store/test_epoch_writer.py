"""The worker's epoch writer: every epoch reaches the store, within one flush interval while a
trial runs (what optuna-dashboard shows), and never over the retry of a reaped trial."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.scheduler.claims import claim_trial
from sweep.scheduler.leases import LeaseLost, TrialRun
from sweep.scheduler.settling import reap_stale_trials
from sweep.store.tables import Sweep
from sweep.training.tasks import EpochResult
from tests.helpers import make_sweep, run_worker


def _trials(settings: Settings, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=settings.database_url).trials


def test_every_reported_epoch_of_every_trial_is_stored(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(
        settings, factory, "all-epochs", n_trials=5, epochs=25, pruner="none", baseline=False,
        reevaluate_top=0,
    )  # fmt: skip
    run_worker(settings)
    trials = _trials(settings, "all-epochs")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    for trial in trials:
        curve = trial.user_attrs["curves"]["val_loss"]
        assert len(curve) == 25
        assert [trial.intermediate_values[step] for step in range(25)] == curve
        assert trial.value == min(curve)


def test_a_running_trials_epochs_are_stored_within_one_flush_interval(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    # heartbeats far apart: only the flush interval can bring the epochs in time
    settings = settings.model_copy(
        update={"flush_interval": 0.3, "heartbeat_interval": 5, "grace_period": 7}
    )
    sweep_id = make_sweep(settings, factory, "live", n_trials=1, epochs=10)
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    with TrialRun(settings, factory, claim) as run:
        for epoch in range(3):
            run.report(EpochResult(epoch, 1.0 / (epoch + 1), 1.0 / (epoch + 2), 0.5))
        reported = time.monotonic()
        while True:  # what a dashboard polling the study sees
            polled = time.monotonic()
            [trial] = _trials(settings, "live")
            if len(trial.intermediate_values) == 3:
                break
            assert polled - reported < 5.0, "epochs not stored"
            time.sleep(0.02)
        # one interval, plus the transaction on a busy machine (the next heartbeat is 5 s away)
        assert polled - reported <= 0.3 + 1.0
        assert trial.state == TrialState.RUNNING
        assert trial.intermediate_values == {0: 0.5, 1: 1 / 3, 2: 0.25}
        assert trial.user_attrs["curves"]["val_loss"] == [0.5, 1 / 3, 0.25]
        assert trial.user_attrs["worker"] == "w"
        run.finish()


def test_a_flush_after_the_trial_was_reaped_raises_lease_lost_and_the_retry_stands(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "late", n_trials=1, epochs=3)
    claim = claim_trial(settings, factory, sweep_id, "stopped")
    assert claim is not None
    late = TrialRun(settings, factory, claim)  # a worker stopped (SIGSTOP) before its first flush
    with factory() as session, session.begin():  # its heartbeat went stale long ago
        session.execute(
            text("UPDATE trial_heartbeats SET heartbeat = :old WHERE trial_id = :tid"),
            {"old": "2000-01-01 00:00:00", "tid": claim.trial_id},
        )
    with factory() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
    reap_stale_trials(settings, factory, sweep)
    retry_claim = claim_trial(settings, factory, sweep_id, "other")
    assert retry_claim is not None and retry_claim.params == claim.params
    with TrialRun(settings, factory, retry_claim) as retry:
        for epoch in range(3):
            retry.report(EpochResult(epoch, 0.5, 0.4 - epoch / 10, 0.9))
        retry.finish()
    # the stopped worker resumes: its epochs and its end are refused
    with late:
        late.report(EpochResult(0, 9.0, 9.0, 0.1))
        try:
            late.finish()
        except LeaseLost:
            pass
        else:
            raise AssertionError("a flush to a reaped trial was accepted")
    reaped, done = _trials(settings, "late")
    assert reaped.state == TrialState.FAIL and reaped.intermediate_values == {}
    assert done.state == TrialState.COMPLETE and done.value == 0.2
    assert done.intermediate_values == {0: 0.4, 1: 0.30000000000000004, 2: 0.2}
