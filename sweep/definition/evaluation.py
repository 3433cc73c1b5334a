"""The words of evaluation: the stages a sweep's evaluation moves through and the kinds of run.

The baseline, the re-evaluations and the test run of a sweep live in a sibling
Optuna study, ``<sweep>.eval``, so the sampler never sees them and they never
count against the budget (the scheduling is in ``sweep.scheduler.evaluation``).
"""

from __future__ import annotations

from enum import StrEnum

EVALUATION_SUFFIX = ".eval"
STAGE_KEY = "stage"  # the evaluation study's user attribute holding its Stage
RACE_DROPPED_KEY = "race_dropped"  # configurations out of the race -> fresh seeds they had


class Stage(StrEnum):
    """Where a sweep's evaluation is: search → reevaluation → test → done."""

    SEARCH = "search"
    REEVALUATION = "reevaluation"
    TEST = "test"
    DONE = "done"


class Kind(StrEnum):
    """What an evaluation trial is (its ``kind`` user attribute)."""

    BASELINE = "baseline"
    REEVALUATION = "reevaluation"
    TEST = "test"


def evaluation_study_name(sweep_name: str) -> str:
    """The name of the study holding a sweep's evaluation trials."""
    return sweep_name + EVALUATION_SUFFIX
