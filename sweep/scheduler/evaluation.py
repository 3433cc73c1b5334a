"""Evaluation trials: the unregularized baseline, re-evaluations on more seeds, the test run.

They live in a sibling Optuna study, ``<sweep>.eval``, so the sampler never sees
them and they never count against the budget or the search's ranking. Workers
claim them with the same lease, heartbeat and retry machinery as search trials,
once the sweep's budget is handed out. The baseline runs on the same seeds as
the re-evaluations, so the two are compared seed by seed (paired). Each trial
says what it is in its user attributes: ``kind`` (baseline, reevaluation or
test), ``params``, ``seed`` and, for re-evaluations and the test run,
``trial_number`` (the search trial whose params it re-trains).

The evaluation study's ``stage`` attribute moves search → reevaluation → test →
done under the sweep's claim lock, so concurrent workers plan each step once:

- search: the baseline may run (it needs no result of the search);
- reevaluation: once every search trial has finished, the ``reevaluate_top``
  best configurations are queued on ``reevaluate_seeds`` further seeds each;
- with ``race``, while re-evaluation lasts: once a round has finished, the
  configurations whose 95% interval lies wholly above the leader's drop out
  (recorded in the study's ``race_dropped``: number -> fresh seeds it had) and
  the others, and the baseline, get the next seed (``race_round`` on the trial),
  until the leader is decided against the runner-up or ``race_seeds`` are spent;
- the baseline follows the re-evaluations onto every seed they run, also after an
  extension (which moves the evaluation seeds past the new search trials' seeds);
- test: once those have finished, the chosen configuration (best mean over
  fresh seeds) is trained once more with the test split measured at its best epoch;
- done: the sweep completes when no evaluation trial is waiting or running.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.evaluation import (
    RACE_DROPPED_KEY,
    STAGE_KEY,
    Kind,
    Stage,
    evaluation_study_name,
)
from sweep.definition.space import Space
from sweep.definition.statistics import race_step
from sweep.definition.status import ACTIVE_STATUSES
from sweep.scheduler.claims import Claim, no_room
from sweep.store import queries
from sweep.store.locks import locked_sweep
from sweep.store.optuna_compat import trial_id
from sweep.store.optuna_storage import storage_for
from sweep.store.results import evaluation_runs, top_configurations
from sweep.store.tables import Sweep


def evaluation_seeds(sweep: Sweep) -> list[int]:
    """Seeds of the re-evaluation runs, the same for every configuration.

    They start after the search trials' seeds (sweep seed + configuration
    number), so a re-evaluation never repeats a search run, and configurations
    are compared on the same seeds.
    """
    first = sweep.seed + sweep.n_trials
    return [first + j for j in range(sweep.reevaluate_seeds)]


def baseline_params(sweep: Sweep) -> dict[str, float]:
    """p = 0 and λ = 0, under the parameter names of the sweep's space."""
    return dict.fromkeys(Space.model_validate(sweep.space).params(), 0.0)


def create_evaluation_study(storage: RDBStorage, sweep: Sweep) -> None:
    """Create the sweep's evaluation study, with the baseline queued if the sweep asks for it."""
    study = optuna.create_study(
        storage=storage,
        study_name=evaluation_study_name(sweep.name),
        direction="minimize",
        load_if_exists=False,
    )
    study.set_user_attr(STAGE_KEY, Stage.SEARCH)
    study.set_user_attr("sweep", sweep.name)
    if sweep.baseline:
        for seed in evaluation_seeds(sweep):  # the leaders' fresh seeds: paired with them
            _queue(study, Kind.BASELINE, baseline_params(sweep), seed)


def _queue(
    study: optuna.Study,
    kind: str,
    params: dict[str, Any],
    seed: int,
    trial_number: int | None = None,
    race_round: int | None = None,
) -> None:
    attrs: dict[str, Any] = {"kind": kind, "params": params, "seed": seed}
    if trial_number is not None:
        attrs["trial_number"] = trial_number
    if race_round is not None:
        attrs["race_round"] = race_round
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, user_attrs=attrs))


def claim_evaluation(
    settings: Settings,
    factory: sessionmaker[Session],
    sweep_id: int,
    worker: str,
    *,
    running_seen: int | None = None,
) -> Claim | None:
    """Give this worker one evaluation trial of the sweep, or None if none is ready.

    Call it when ``claim_trial`` has nothing: under the sweep's lock it plans
    the next stage if the previous one has finished, then hands out a waiting
    evaluation trial.
    """
    with locked_sweep(factory, sweep_id) as session:
        sweep = session.get(Sweep, sweep_id, populate_existing=True)
        if sweep is None or sweep.status not in ACTIVE_STATUSES:
            return None
        conn = session.connection()
        name = evaluation_study_name(sweep.name)
        eval_id = queries.study_id(conn, name)
        if eval_id is None:  # created before evaluation studies existed
            return None
        storage = storage_for(settings, sweep.max_attempts)
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
        )
        _advance(conn, study, sweep, eval_id)
        if not queries.state_counts(conn, eval_id).get("WAITING", 0):
            return None
        if no_room(conn, sweep, running_seen):
            return None
        trial = study.ask()  # takes a waiting trial: there is one, and we hold the lock
        storage.record_heartbeat(trial_id(trial))
        frozen = storage.get_trial(trial_id(trial))
        attrs = frozen.user_attrs
        return Claim.of(
            sweep,
            pruner="none",  # a re-evaluation runs to the end, as its search trial could have
            pruner_options={},
            trial_id=trial_id(trial),
            number=trial.number,
            params=dict(attrs["params"]),
            seed=int(attrs["seed"]),
            attempt=len(frozen.system_attrs.get("retry_history", [])) + 1,
            worker=worker,
            study_name=name,
            evaluate_test=attrs["kind"] == Kind.TEST,
        )


def _advance(conn: Connection, study: optuna.Study, sweep: Sweep, eval_id: int) -> None:
    """Plan the next stage of evaluation if the current one has finished."""
    stage = queries.study_user_attr(conn, eval_id, STAGE_KEY) or Stage.SEARCH
    if stage == Stage.SEARCH:
        if not _search_finished(conn, sweep):
            return
        main_id = queries.study_id(conn, sweep.name)
        assert main_id is not None
        if sweep.reevaluate_top:
            best_ids = queries.best_trial_ids(conn, main_id, sweep.reevaluate_top)
            # After an extension, configurations re-evaluated before are not trained again.
            done = _planned(conn, eval_id, Kind.REEVALUATION)
            queued = False
            for row in queries.trial_rows(conn, best_ids, ()):
                if row.number in done:
                    continue
                for seed in evaluation_seeds(sweep):
                    _queue(study, Kind.REEVALUATION, row.params, seed, row.number)
                queued = True
            # An extension moves the evaluation seeds past the new search trials' seeds.
            _pair_baseline(conn, study, sweep, set(evaluation_seeds(sweep)) if queued else set())
        stage = _set_stage(study, Stage.REEVALUATION)
    if stage == Stage.REEVALUATION:
        if _busy(conn, eval_id, Kind.REEVALUATION):
            return
        if sweep.race and _race_round(conn, study, sweep, eval_id):
            return  # another round is queued
        chosen = top_configurations(conn, sweep, 1) if sweep.test_split else []
        if not chosen:
            _set_stage(study, Stage.DONE)
            return
        # The chosen configuration's own search run again, now measuring the test split.
        trial = chosen[0].trial
        if trial.number not in _planned(conn, eval_id, Kind.TEST):
            _queue(study, Kind.TEST, trial.params, chosen[0].seed, trial.number)
        stage = _set_stage(study, Stage.TEST)
    if stage == Stage.TEST and not _busy(conn, eval_id, Kind.TEST):
        _set_stage(study, Stage.DONE)


def _race_round(conn: Connection, study: optuna.Study, sweep: Sweep, eval_id: int) -> bool:
    """Drop the configurations out of the race that lost it, and queue the next seed for
    the others (and the baseline, to stay paired); False when the race is over."""
    runs = [r for r in evaluation_runs(conn, sweep) if r.kind == Kind.REEVALUATION]
    dropped: dict[str, int] = dict(queries.study_user_attr(conn, eval_id, RACE_DROPPED_KEY) or {})
    fresh: dict[int, dict[int, float]] = {}
    params: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run.trial_number is None or str(run.trial_number) in dropped:
            continue
        params[run.trial_number] = run.params
        if run.value is not None and math.isfinite(run.value):
            fresh.setdefault(run.trial_number, {})[run.seed] = run.value
    alive = {n: [v[s] for s in sorted(v)] for n, v in fresh.items()}
    step = race_step(alive, sweep.race_seeds)
    if step.dropped:
        dropped.update({str(n): len(alive[n]) for n in step.dropped})
        study.set_user_attr(RACE_DROPPED_KEY, dropped)
    # Configurations that joined after an extension catch up to race_seeds; the others are done.
    # Seeds tried, not only those that gave a finite loss: a run that keeps failing ends too.
    tried: dict[int, set[int]] = {}
    for run in runs:
        if run.trial_number is not None:
            tried.setdefault(run.trial_number, set()).add(run.seed)
    racing = [
        n for n in sorted(alive) if n not in step.dropped and len(tried[n]) < sweep.race_seeds
    ]
    if step.over or not racing:
        return False
    first = evaluation_seeds(sweep)[0]
    seed = max(first, *(r.seed + 1 for r in runs))  # never a seed a search trial had
    for number in racing:
        _queue(study, Kind.REEVALUATION, params[number], seed, number, seed - first)
    _pair_baseline(conn, study, sweep, {seed}, race_round=seed - first)
    return True


def _pair_baseline(
    conn: Connection,
    study: optuna.Study,
    sweep: Sweep,
    queued: set[int],
    race_round: int | None = None,
) -> None:
    """Queue the baseline on every seed a re-evaluation has (``queued``: seeds just queued)
    and the baseline has not, so /best's paired test holds after an extension too."""
    if not sweep.baseline:
        return
    runs = evaluation_runs(conn, sweep)
    wanted = queued | {r.seed for r in runs if r.kind == Kind.REEVALUATION}
    has = {r.seed for r in runs if r.kind == Kind.BASELINE}  # failed ones too: retried already
    for seed in sorted(wanted - has):
        _queue(study, Kind.BASELINE, baseline_params(sweep), seed, race_round=race_round)


def _set_stage(study: optuna.Study, stage: str) -> str:
    study.set_user_attr(STAGE_KEY, stage)
    return stage


def _search_finished(conn: Connection, sweep: Sweep) -> bool:
    main_id = queries.study_id(conn, sweep.name)
    if main_id is None:
        return False
    waiting, started, _ = queries.budget_counts(conn, main_id)
    running = queries.state_counts(conn, main_id).get("RUNNING", 0)
    return not waiting and not running and started >= sweep.n_trials


def _planned(conn: Connection, eval_id: int, kind: str) -> set[int]:
    """Search trial numbers with an evaluation trial of ``kind`` waiting, running or done."""
    ids = queries.trial_ids_page(conn, eval_id, after_number=-1, limit=100_000, state=None)
    return {
        int(row.user_attrs["trial_number"])
        for row in queries.trial_rows(conn, ids, ("kind", "trial_number"))
        if row.state in ("WAITING", "RUNNING", "COMPLETE")
        and row.user_attrs.get("kind") == kind
        and row.user_attrs.get("trial_number") is not None
    }


def reopen_evaluation(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> None:
    """Send the sweep's evaluation back to the search stage (its budget grew), so it is planned
    again over the new best configurations once the new search trials have finished."""
    with locked_sweep(factory, sweep_id) as session:
        sweep = session.get(Sweep, sweep_id, populate_existing=True)
        if sweep is None:
            return
        name = evaluation_study_name(sweep.name)
        eval_id = queries.study_id(session.connection(), name)
        if eval_id is None:
            return
        storage = storage_for(settings, sweep.max_attempts)
        study = optuna.load_study(study_name=name, storage=storage)
        _set_stage(study, Stage.SEARCH)


def _busy(conn: Connection, eval_id: int, kind: str) -> bool:
    """Whether an evaluation trial of ``kind`` is waiting or running."""
    ids = queries.trial_ids_page(conn, eval_id, after_number=-1, limit=100_000, state=None)
    return any(
        row.state in ("WAITING", "RUNNING") and row.user_attrs.get("kind") == kind
        for row in queries.trial_rows(conn, ids, ("kind",))
    )
