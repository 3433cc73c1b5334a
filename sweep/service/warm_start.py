"""Warm start: a new sweep's study begins with the finished trials of an earlier sweep."""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy import select
from sqlalchemy.orm import Session

from sweep.definition.space import Space
from sweep.definition.spec import SweepSpec
from sweep.errors import InvalidSweep, NotFound
from sweep.store import queries
from sweep.store.tables import Sweep

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def warm_start_source(session: Session, spec: SweepSpec) -> Sweep | None:
    """The sweep ``spec`` starts from, if any: NotFound if it does not exist, InvalidSweep
    if its task, space or epochs differ (its trials would not mean the same)."""
    if spec.warm_start_from is None:
        return None
    source = session.scalar(select(Sweep).where(Sweep.name == spec.warm_start_from))
    if source is None:
        raise NotFound(f"warm_start_from: no sweep named {spec.warm_start_from!r}")
    differ = [
        f"{field} ({theirs!r} there, {ours!r} here)"
        for field, theirs, ours in (
            ("task", source.task, spec.task),
            ("space", Space.model_validate(source.space).as_dict(), spec.space.as_dict()),
            ("epochs", source.epochs, spec.epochs),
        )
        if theirs != ours
    ]
    if differ:
        raise InvalidSweep(
            f"warm_start_from: sweep {source.name!r} differs in "
            + "; ".join(differ)
            + ": only a sweep with the same task, space and epochs can start this one"
        )
    return source


def copy_finished_trials(storage: RDBStorage, source: str, target: str) -> int:
    """Copy the complete and pruned trials of study ``source`` (values, params, intermediate
    values, user attributes) into study ``target``, each marked ``copied_from``; how many.

    Trials that only repeated a twin's result are left behind: their twin is copied.
    """

    def origin(trial: FrozenTrial) -> dict[str, object]:
        return {"sweep": source, "number": trial.number}

    trials = optuna.load_study(study_name=source, storage=storage).get_trials(
        deepcopy=False, states=FINISHED
    )
    copies = [
        create_trial(
            state=trial.state,
            values=trial.values,  # a pruned trial keeps the loss it was stopped at
            params=trial.params,
            distributions=trial.distributions,
            intermediate_values=trial.intermediate_values,
            user_attrs={
                **{k: v for k, v in trial.user_attrs.items() if k != queries.ENQUEUED_MARK},
                queries.COPIED_MARK: origin(trial),
            },
            # What the budget counts by (queries.NOT_STARTED_MARKS); the user attribute is
            # what users see.
            system_attrs={queries.COPIED_MARK: origin(trial)},
        )
        for trial in trials
        if queries.REUSED_MARK not in trial.user_attrs
    ]
    optuna.load_study(study_name=target, storage=storage).add_trials(copies)
    return len(copies)
