"""Pruning from a worker's cached view of a study, with Optuna's own pruners.

The worker mirrors each study it trains trials of into an in-memory Optuna study
(``InMemoryStorage``): finished trials are read once, unfinished ones only for
their new epochs and their state. The sweep's pruner (the same class and options,
from ``make_pruner``) decides on that mirror exactly as it would on the store.

How fresh the decision is: the view is refreshed when it is older than
``max_age`` (the flush interval), and another worker's epochs reach the store
within its own flush interval. So a decision sees every epoch of the other
trials reported up to ``max_age`` + that worker's flush interval before it (one
second by default), and the deciding trial's own epochs at once. With a fresh
view (``max_age`` 0, every other worker flushed) the decisions are those of
``trial.should_prune()`` on the store; a stale view can only miss trials that
finished, or epochs reported, within that bound.
"""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from optuna.pruners import BasePruner, NopPruner, SuccessiveHalvingPruner
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy.orm import Session, sessionmaker

from sweep.store.trial_changes import TrialChange, trial_changes

# What successive halving (and Hyperband, which runs it per bracket) records on each trial.
RUNG_PREFIX = "completed_rung_"


class PruningView:
    """One study's trials as this worker last read them, and its pruner's decisions on them.

    Used from the training thread only (batch members share it, one after another).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        study_name: str,
        pruner: BasePruner,
        *,
        max_age: float,
    ) -> None:
        self._factory = factory
        self._name = study_name
        self._max_age = max_age
        self._mirror = InMemoryStorage()
        self._study_id = self._mirror.create_new_study([StudyDirection.MINIMIZE], study_name)
        # Sweeps minimize validation loss; the sampler is never asked.
        self.study = optuna.Study(
            study_name,
            storage=self._mirror,
            sampler=optuna.samplers.RandomSampler(),
            pruner=pruner,
        )
        self._ids: dict[int, int] = {}  # store trial id -> mirror trial id
        self._unfinished: dict[int, int] = {}  # store trial id -> last step read
        self._refreshed_at = -math.inf
        self._rungs = _records_rungs(pruner)
        # Trials decided here: their pruner records are this view's own, never read back.
        self._deciding: set[int] = set()

    def should_prune(self, trial_id: int, step: int, value: float) -> bool:
        """Record ``value`` at ``step`` of the store's trial ``trial_id``; whether to prune it."""
        if isinstance(self.study.pruner, NopPruner):
            return False  # decides nothing from the study: no need to read it
        self._deciding.add(trial_id)
        if trial_id not in self._ids or time.monotonic() - self._refreshed_at >= self._max_age:
            self.refresh()
        mirror_id = self._ids.get(trial_id)
        if mirror_id is None or self._mirror.get_trial(mirror_id).state.is_finished():
            return False  # not visible yet, or reaped: its writes are refused anyway
        self._mirror.set_trial_intermediate_value(mirror_id, step, value)
        return self.study.pruner.prune(self.study, self._mirror.get_trial(mirror_id))

    def records(self, trial_id: int) -> dict[str, Any]:
        """What the pruner recorded on the trial (successive halving's rungs), to be stored
        where other workers' pruners read it."""
        mirror_id = self._ids.get(trial_id)
        if mirror_id is None or not self._rungs:
            return {}
        attrs = self._mirror.get_trial(mirror_id).system_attrs
        return {key: value for key, value in attrs.items() if key.startswith(RUNG_PREFIX)}

    def refresh(self) -> None:
        """Read what changed in the study since the last refresh."""
        with self._factory() as session:
            changes = trial_changes(
                session.connection(),
                self._name,
                from_number=len(self._ids),
                unfinished=self._unfinished,
                system_prefix=RUNG_PREFIX if self._rungs else None,
            )
        self._refreshed_at = time.monotonic()
        for change in changes:
            if change.trial_id in self._ids:
                self._update(change)
            elif change.number == len(self._ids):  # numbers stay those of the store
                self._add(change)
            # else: a trial numbered after one not committed yet; the next refresh adds both

    def _others_records(self, change: TrialChange) -> dict[str, Any]:
        return {} if change.trial_id in self._deciding else change.system_attrs

    def _add(self, change: TrialChange) -> None:
        state = TrialState[change.state]
        template = optuna.trial.create_trial(
            state=state,
            value=_value(change) if state == TrialState.COMPLETE else None,
            intermediate_values=change.steps,
            system_attrs=self._others_records(change),
        )
        self._ids[change.trial_id] = self._mirror.create_new_trial(
            self._study_id, template_trial=template
        )
        if not state.is_finished():
            self._unfinished[change.trial_id] = max(change.steps, default=-1)

    def _update(self, change: TrialChange) -> None:
        mirror_id = self._ids[change.trial_id]
        if change.trial_id not in self._unfinished:
            return  # finished here already
        for step, value in change.steps.items():
            self._mirror.set_trial_intermediate_value(mirror_id, step, value)
        for key, attr in self._others_records(change).items():
            self._mirror.set_trial_system_attr(mirror_id, key, attr)
        self._unfinished[change.trial_id] = max([self._unfinished[change.trial_id], *change.steps])
        state = TrialState[change.state]
        if state != self._mirror.get_trial(mirror_id).state:
            values = [_value(change)] if state == TrialState.COMPLETE else None
            self._mirror.set_trial_state_values(mirror_id, state, values)
        if state.is_finished():
            del self._unfinished[change.trial_id]


class PruningViews:
    """A worker's pruning views, one per study (and pruner), built when first needed."""

    def __init__(self, factory: sessionmaker[Session], max_age: float) -> None:
        self._factory = factory
        self._max_age = max_age
        self._views: dict[tuple[str, str], PruningView] = {}

    def of(self, study_name: str, pruner: BasePruner) -> PruningView:
        """The view of ``study_name`` deciding with ``pruner`` (the first one given keeps it)."""
        key = (study_name, type(pruner).__name__)
        if key not in self._views:
            self._views[key] = PruningView(self._factory, study_name, pruner, max_age=self._max_age)
        return self._views[key]


def _records_rungs(pruner: BasePruner) -> bool:
    return isinstance(pruner, SuccessiveHalvingPruner | optuna.pruners.HyperbandPruner)


def _value(change: TrialChange) -> float:
    return change.value if change.value is not None else math.inf
