"""The Optuna internals sweep relies on, each checked against the installed Optuna.

If one of these fails after an Optuna upgrade, fix sweep/store/optuna_compat.py.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweep.store import optuna_compat


@pytest.fixture
def study(sqlite_url: str) -> optuna.Study:
    return optuna.create_study(storage=sqlite_url, study_name="compat")


def test_the_installed_optuna_is_a_version_these_were_checked_against() -> None:
    major_minor = ".".join(optuna.__version__.split(".")[:2])
    assert major_minor in optuna_compat.CHECKED_VERSIONS, (
        f"Optuna {optuna.__version__} is not among the versions sweep/store/optuna_compat.py "
        f"was checked against ({', '.join(optuna_compat.CHECKED_VERSIONS)}): run these tests, "
        "then add it"
    )


def test_trial_id_is_the_storage_id_of_an_asked_trial(study: optuna.Study) -> None:
    trial = study.ask()
    frozen = study._storage.get_trial(optuna_compat.trial_id(trial))
    assert frozen.number == trial.number and frozen.state == TrialState.RUNNING


def test_telling_a_finished_trial_is_recognised(study: optuna.Study) -> None:
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(Exception) as raised:
        study.tell(trial, 1.0)
    assert optuna_compat.is_tell_on_finished_trial(raised.value)
    assert not optuna_compat.is_tell_on_finished_trial(ValueError("something else"))
