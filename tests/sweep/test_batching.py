"""`sweep worker --batch K`: stacked trials stay separate Optuna trials with their own results."""

from __future__ import annotations

import logging
import math

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.evaluation import EVALUATION_SUFFIX
from sweep.service import sweeps
from sweep.worker.loop import Worker
from tests.helpers import make_sweep

# Without dropout the stacked model trains exactly like separate runs (to fp32 rounding).
NO_DROPOUT = {
    "dropout": {"choices": [0.0]},
    "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
}
SMALL_DIGITS = {"task": "digits-mlp", "task_options": {"train_size": 100}}


def trials(settings: Settings, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=settings.database_url).trials


def test_batched_trials_match_one_at_a_time(
    settings: Settings, factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    def swept(name: str, batch: int) -> tuple[list[FrozenTrial], list[FrozenTrial]]:
        # each sweep queued just before its own worker, so only that worker trains it;
        # after the budget: the baseline and the top 3 on 3 more seeds each, then the chosen
        # configuration on the test split (13 runs)
        options = {"epochs": 5, "n_trials": 5, "sampler": "random", "pruner": "none"}
        options["test_split"] = True
        make_sweep(settings, factory, name, **SMALL_DIGITS, **options, space=NO_DROPOUT)
        Worker(settings, device="cpu", exit_when_idle=True, batch=batch).run()
        return trials(settings, name), trials(settings, name + EVALUATION_SUFFIX)

    with caplog.at_level(logging.INFO, logger="sweep.worker"):
        (stacked, stacked_eval), (alone, alone_eval) = swept("stacked", 3), swept("alone", 1)
    assert [t.state for t in stacked] == [TrialState.COMPLETE] * 5
    for s, a in zip(stacked, alone, strict=True):
        assert s.params == a.params
        assert len(s.intermediate_values) == len(a.intermediate_values) == 5
        for epoch, value in a.intermediate_values.items():
            assert math.isclose(s.intermediate_values[epoch], value, rel_tol=1e-4)
        assert s.user_attrs["curves"]["train_loss"] == pytest.approx(
            a.user_attrs["curves"]["train_loss"], rel=1e-4
        )
        assert s.user_attrs["metrics"]["epoch"] == a.user_attrs["metrics"]["epoch"]
    # the evaluation runs trained in the batch's slots, with the test metrics of runs alone
    claims = [r.__dict__ for r in caplog.records if r.__dict__.get("event") == "claim"]
    evaluation = [c for c in claims if c["study"] == "stacked.eval"]
    assert len(evaluation) == 13 and any("slot" in c for c in evaluation)
    assert len(stacked_eval) == len(alone_eval) == 13
    for s, a in zip(stacked_eval, alone_eval, strict=True):
        assert s.state == a.state == TrialState.COMPLETE and s.params == a.params
        assert s.value == pytest.approx(a.value, rel=1e-4)
        s_metrics, a_metrics = s.user_attrs["metrics"], a.user_attrs["metrics"]
        assert s_metrics.keys() == a_metrics.keys()
        assert s_metrics == pytest.approx(a_metrics, rel=1e-4)
    assert sum("test_loss" in t.user_attrs["metrics"] for t in stacked_eval) == 1


def test_a_batch_keeps_the_budget_and_refills_freed_slots(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    # search trials only: evaluation runs would add to trials_run
    make_sweep(
        settings,
        factory,
        "refill",
        **SMALL_DIGITS,
        n_trials=7,
        epochs=6,
        patience=2,
        baseline=False,
        reevaluate_top=0,
    )
    worker = Worker(settings, device="cpu", exit_when_idle=True, batch=3)
    assert worker.run() == 0
    assert worker.trials_run == 7  # more than one batch of 3: freed slots took new trials
    done = trials(settings, "refill")
    assert len(done) == 7
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    for t in done:  # every member reported its own epochs
        assert len(t.user_attrs["curves"]["val_loss"]) == len(t.intermediate_values)
    with factory() as session:
        assert sweeps.get_sweep(session, "refill").status == "completed"


def test_a_task_without_a_batched_form_runs_one_trial_at_a_time(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    make_sweep(settings, factory, "plain", task="synthetic", epochs=5, n_trials=3)
    assert Worker(settings, device="cpu", exit_when_idle=True, batch=4).run() == 0
    assert [t.state for t in trials(settings, "plain")] == [TrialState.COMPLETE] * 3
