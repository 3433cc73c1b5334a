"""Bugs of the trial lifecycle, each pinned by what a user would see: retries start clean,
/top ranks configurations once, a sweep that was never stored leaves no study, a failed
batch leaves no lease behind, and errors in background threads are logged and counted."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.trial import TrialState
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from sweep.config import Settings
from sweep.definition.space import Space
from sweep.scheduler.claims import claim_trial
from sweep.scheduler.leases import TrialRun
from sweep.scheduler.settling import reap_stale_trials
from sweep.service import sweeps
from sweep.store.engine import transaction
from sweep.store.optuna_storage import storage_for
from sweep.store.tables import Sweep, utcnow
from sweep.training.tasks import EpochResult
from sweep.worker.loop import Worker
from tests.conftest import issue_token
from tests.helpers import good_arrays, make_sweep, save_npz

RUN_ATTRS = {"error", "curves", "metrics", "worker", "attempt"}


def _waiting(settings: Settings, name: str) -> optuna.trial.FrozenTrial:
    study = optuna.load_study(study_name=name, storage=settings.database_url)
    [waiting] = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return waiting


def test_a_retry_after_an_error_starts_without_the_failed_runs_results(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "clean-retry", n_trials=1)
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    with TrialRun(settings, factory, claim) as run:
        run.report(EpochResult(0, 0.5, 0.6, 0.8))
        run.report(EpochResult(1, 0.4, 0.5, 0.8))
        run.fail("RuntimeError: CUDA out of memory", retry=True)
    retry = _waiting(settings, "clean-retry")
    assert RUN_ATTRS.isdisjoint(retry.user_attrs), retry.user_attrs
    assert retry.params == claim.params


def test_a_retry_of_a_reaped_trial_starts_without_its_curves(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "clean-reap", n_trials=1)
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    storage = storage_for(settings)
    # what a worker's epoch writer had saved before the worker was killed
    storage.set_trial_user_attr(claim.trial_id, "worker", "dead-worker")
    storage.set_trial_user_attr(claim.trial_id, "curves", {"val_loss": [0.9, 0.8]})
    time.sleep(settings.grace_period + 1.5)
    with factory() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
    reap_stale_trials(settings, factory, sweep)
    retry = _waiting(settings, "clean-reap")
    assert RUN_ATTRS.isdisjoint(retry.user_attrs), retry.user_attrs


def test_a_trial_whose_claim_was_cut_off_after_ask_is_handed_out_again(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    sweep_id = make_sweep(settings, factory, "cut-claim", n_trials=1, baseline=False)
    with factory() as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None
    # What a claim leaves when the database restarts after ask() committed, before the
    # first heartbeat: a RUNNING trial that nobody trains and that can never go stale.
    study = optuna.load_study(study_name="cut-claim", storage=storage_for(settings))
    cut = study.ask(Space.model_validate(sweep.space).distributions())
    assert claim_trial(settings, factory, sweep_id, "w") is None  # its budget looks spent
    reap_stale_trials(settings, factory, sweep)
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    assert (claim.number, claim.params, claim.attempt) == (cut.number, cut.params, 1)
    trials = optuna.load_study(study_name="cut-claim", storage=settings.database_url).trials
    assert [t.state for t in trials] == [TrialState.RUNNING]  # nothing failed, nothing added


def test_top_leaves_out_trials_that_reused_another_trials_result(
    settings: Settings, factory: sessionmaker[Session], client: TestClient
) -> None:
    # one point in the space: the first trial trains, the others reuse its result
    one_point = {"dropout": {"choices": [0.3]}, "weight_decay": {"choices": [1e-3]}}
    sweep_id = make_sweep(
        settings, factory, "one-point", n_trials=3, sampler="random", space=one_point
    )
    claim = claim_trial(settings, factory, sweep_id, "w")
    assert claim is not None
    with TrialRun(settings, factory, claim) as run:
        run.report(EpochResult(0, 0.5, 0.6, 0.8))
        run.finish()
    assert claim_trial(settings, factory, sweep_id, "w") is None  # the rest reused it
    study = optuna.load_study(study_name="one-point", storage=settings.database_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    top = client.get("/v1/sweeps/one-point/top", params={"k": 5}).json()
    assert [row["number"] for row in top] == [0]


def test_a_sweep_whose_row_is_rolled_back_leaves_no_study_and_its_name_free(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    spec = sweeps.SweepSpec.model_validate({"name": "half-made", "task": "synthetic"})
    storage = storage_for(settings)
    with pytest.raises(RuntimeError), transaction(factory) as session:
        sweeps.create_sweep(session, storage, spec)
        raise RuntimeError("the request failed before its commit")
    assert "half-made" not in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    with transaction(factory) as session:
        sweeps.create_sweep(session, storage, spec)
    with factory() as session:
        assert sweeps.get_sweep(session, "half-made").status == "queued"


def test_a_batch_that_fails_in_set_up_leaves_no_lease_running(
    settings: Settings, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    data = save_npz(tmp_path, good_arrays())
    make_sweep(
        settings, factory, "vanishing-data", n_trials=3, task="npz-mlp",
        task_options={"path": str(data)}, max_attempts=1, baseline=False, reevaluate_top=0,
    )  # fmt: skip
    data.unlink()  # the batch's set-up (loading the data) now fails on the worker
    worker = Worker(settings, device="cpu", exit_when_idle=True, batch=2, threads=1)
    assert worker.run() == 0
    assert worker.writer.held() == []  # no trial's heartbeat is renewed any more
    study = optuna.load_study(study_name="vanishing-data", storage=settings.database_url)
    assert {t.state for t in study.trials} == {TrialState.FAIL}
    assert all("npz file not found" in str(t.user_attrs.get("error")) for t in study.trials)
    with factory() as session:
        assert sweeps.get_sweep(session, "vanishing-data").status == "failed"


def test_an_error_in_the_reaper_is_logged_with_its_traceback_and_counted(
    settings: Settings, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with transaction(factory) as session:  # a sweep row whose Optuna study was deleted
        session.add(
            Sweep(name="orphan", task="synthetic", n_trials=1, epochs=1, space={},
                  sampler="tpe", pruner="none", penalty="l2", seed=0, status="running",
                  created_at=utcnow())
        )  # fmt: skip
    headers = {"Authorization": f"Bearer {issue_token(settings.database_url)}"}
    with (
        caplog.at_level(logging.ERROR, logger="sweep.api"),
        TestClient(create_app(settings), headers=headers) as client,
    ):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _reaper_errors(caplog):
            time.sleep(0.2)
        text = client.get("/metrics").text
    records = _reaper_errors(caplog)
    assert records and records[0].exc_info is not None  # the traceback, not one line
    assert 'sweep_background_errors_total{thread="reaper"}' in text
    assert "orphan" in records[0].getMessage()


def _reaper_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "reaper thread" in r.getMessage()]
