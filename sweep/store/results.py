"""What a sweep found, read from the store as frozen snapshots: the best configurations,
trial pages, one trial's curves and the evaluation runs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from sweep.definition.evaluation import STAGE_KEY, Kind, Stage, evaluation_study_name
from sweep.definition.statistics import (
    Summary,
    decided,
    paired_p_value,
    summarize,
    welch_p_value,
)
from sweep.errors import NoResultYet, NotFound
from sweep.store import queries
from sweep.store.tables import Sweep


@dataclass(frozen=True)
class TrialResult:
    """One trial as a user sees it."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    epoch: int | None
    metrics: dict[str, Any]
    attempt: int
    worker: str | None
    error: str | None
    reused_from: int | None
    started_at: datetime | None
    finished_at: datetime | None
    curves: dict[str, list[float]]
    seed: int | None = None
    enqueued: bool = False  # a configuration a user queued to try next
    copied_from: dict[str, Any] | None = None  # the sweep and trial a warm start copied

    @classmethod
    def from_row(cls, row: queries.TrialRow) -> TrialResult:
        attrs = row.user_attrs
        metrics = dict(attrs.get("metrics", {}))
        return cls(
            number=row.number,
            state=row.state,
            # A queued configuration's params are set on the trial when a worker takes it.
            params=row.params or dict(attrs.get(queries.ENQUEUED_MARK) or {}),
            value=row.value if row.state == "COMPLETE" else None,
            epoch=metrics.get("epoch"),
            metrics=metrics,
            attempt=int(attrs.get("attempt", 1)),
            worker=attrs.get("worker"),
            error=attrs.get("error"),
            reused_from=attrs.get("reused_from"),
            enqueued=queries.ENQUEUED_MARK in attrs,
            copied_from=attrs.get(queries.COPIED_MARK),
            started_at=row.started_at,
            finished_at=row.finished_at,
            curves=dict(attrs.get("curves", {})),
            seed=attrs.get("seed"),
        )


SUMMARY_ATTRS = (
    "metrics",
    "attempt",
    "worker",
    "error",
    "reused_from",
    "seed",
    queries.ENQUEUED_MARK,
    queries.COPIED_MARK,
)
DETAIL_ATTRS = (*SUMMARY_ATTRS, "curves")


def _results(conn: Connection, ids: list[int], keys: tuple[str, ...]) -> list[TrialResult]:
    return [TrialResult.from_row(row) for row in queries.trial_rows(conn, ids, keys)]


def study_id_of(conn: Connection, sweep: Sweep) -> int:
    """The id of the sweep's Optuna study; NotFound if the database has none."""
    study = queries.study_id(conn, sweep.name)
    if study is None:
        raise NotFound(f"sweep {sweep.name!r} has no Optuna study in this database")
    return study


@dataclass(frozen=True)
class Configuration:
    """A configuration the search found, with its best validation loss on every seed it ran.

    The search run is the *selection* run: the configuration was picked for it,
    so it is biased low. Only the fresh seeds of re-evaluation rank it.
    """

    trial: TrialResult  # the search trial that found it
    seed: int  # that trial's seed
    fresh: dict[int, float] = field(default_factory=dict)  # re-evaluation seed -> its value

    @property
    def selection_value(self) -> float:
        return float(self.trial.value or 0.0)

    @property
    def fresh_values(self) -> list[float]:
        return [self.fresh[s] for s in sorted(self.fresh)]

    @property
    def fresh_summary(self) -> Summary:
        """Mean, std and 95% interval over the fresh seeds alone: the unbiased estimate."""
        return summarize(self.fresh_values)

    @property
    def ranking_value(self) -> float:
        """What /top ranks by: the fresh mean once re-evaluated, else the search run."""
        mean = self.fresh_summary.mean
        return self.selection_value if mean is None else mean


@dataclass(frozen=True)
class EvaluationRun:
    """A baseline, re-evaluation or test trial of the sweep's evaluation study."""

    kind: str
    number: int
    state: str
    params: dict[str, Any]
    seed: int
    trial_number: int | None  # the search trial whose params it trains
    value: float | None
    metrics: dict[str, Any]
    curves: dict[str, list[float]]


def evaluation_stage(conn: Connection, sweep: Sweep) -> str:
    """search, reevaluation, test or done (done for a sweep without evaluation trials)."""
    study = queries.study_id(conn, evaluation_study_name(sweep.name))
    if study is None:
        return Stage.DONE
    return str(queries.study_user_attr(conn, study, STAGE_KEY) or Stage.SEARCH)


def evaluation_runs(conn: Connection, sweep: Sweep, *, curves: bool = False) -> list[EvaluationRun]:
    """Every evaluation trial of the sweep, in number order."""
    study = queries.study_id(conn, evaluation_study_name(sweep.name))
    if study is None:
        return []
    ids = queries.trial_ids_page(conn, study, after_number=-1, limit=100_000, state=None)
    keys = ("kind", "params", "seed", "trial_number", "metrics") + (("curves",) if curves else ())
    return [
        EvaluationRun(
            kind=str(row.user_attrs.get("kind")),
            number=row.number,
            state=row.state,
            params=dict(row.user_attrs.get("params", {})),
            seed=int(row.user_attrs.get("seed", 0)),
            trial_number=row.user_attrs.get("trial_number"),
            value=row.value if row.state == "COMPLETE" else None,
            metrics=dict(row.user_attrs.get("metrics", {})),
            curves=dict(row.user_attrs.get("curves", {})),
        )
        for row in queries.trial_rows(conn, ids, keys)
    ]


def finished_run(runs: list[EvaluationRun], kind: str) -> EvaluationRun | None:
    """The last completed evaluation run of ``kind``, if any."""
    done = [r for r in runs if r.kind == kind and r.state == "COMPLETE" and r.value is not None]
    return done[-1] if done else None


def top_configurations(conn: Connection, sweep: Sweep, k: int) -> list[Configuration]:
    """The ``k`` best configurations, best first.

    Until re-evaluation has finished, by the search run's validation loss (one
    seed each). After it, the re-evaluated configurations come first, ranked by
    their mean over the fresh seeds alone (the search run, which picked them, is
    left out: it is biased low), then the others by their search run.
    """
    extra: dict[int, dict[int, float]] = {}
    if evaluation_stage(conn, sweep) in (Stage.TEST, Stage.DONE):
        for run in evaluation_runs(conn, sweep):
            ok = run.value is not None and math.isfinite(run.value)
            if run.kind == Kind.REEVALUATION and ok and run.trial_number is not None:
                extra.setdefault(int(run.trial_number), {})[run.seed] = float(run.value or 0.0)
    study = study_id_of(conn, sweep)
    # every re-evaluated configuration, wherever its search run ranks, and the best k overall
    reevaluated = queries.trial_ids_by_number(conn, study, list(extra))
    ids = list(dict.fromkeys([*reevaluated, *queries.best_trial_ids(conn, study, k)]))
    configurations = [
        Configuration(
            trial=t,
            seed=t.seed if t.seed is not None else sweep.seed + t.number,
            fresh=extra.get(t.number, {}),
        )
        for t in _results(conn, ids, SUMMARY_ATTRS)
    ]
    configurations.sort(key=lambda c: (not c.fresh, c.ranking_value, c.trial.number))
    return configurations[:k]


def best_configuration(conn: Connection, sweep: Sweep) -> Configuration:
    """The best configuration so far; NoResultYet before a trial has completed."""
    best = top_configurations(conn, sweep, 1)
    if not best:
        raise NoResultYet(f"no trial of sweep {sweep.name!r} has completed yet; try again later")
    return best[0]


@dataclass(frozen=True)
class Baseline:
    """The unregularized baseline's runs, one per evaluation seed (the leaders' fresh seeds)."""

    runs: list[EvaluationRun]  # completed, in seed order

    @property
    def by_seed(self) -> dict[int, float]:
        return {r.seed: float(r.value or 0.0) for r in self.runs}

    @property
    def summary(self) -> Summary:
        return summarize([float(r.value or 0.0) for r in self.runs])


def baseline_of(runs: list[EvaluationRun]) -> Baseline | None:
    """The completed baseline runs among ``runs``; None before one has finished."""
    done = [
        r
        for r in runs
        if r.kind == Kind.BASELINE and r.value is not None and math.isfinite(r.value)
    ]
    return Baseline(sorted(done, key=lambda r: r.seed)) if done else None


@dataclass(frozen=True)
class Answer:
    """The best configuration and how sure it is: against the runner-up and the baseline."""

    best: Configuration
    runner_up: Configuration | None
    baseline: Baseline | None
    p_value: float | None  # Welch's t-test, best vs runner-up over their fresh seeds
    baseline_p_value: float | None  # paired t-test, best vs baseline on the seeds they share

    @property
    def decided(self) -> bool:
        """Whether the best is told apart from the runner-up (p < 0.05)."""
        return decided(self.p_value)


def compare(
    best: Configuration, runner_up: Configuration | None, baseline: Baseline | None
) -> Answer:
    """The p-values of ``best`` against the runner-up and the baseline (no database)."""
    p_value = None
    if runner_up is not None:
        p_value = welch_p_value(best.fresh_values, runner_up.fresh_values)
    baseline_p_value = None
    if baseline is not None:
        shared = sorted(set(best.fresh) & set(baseline.by_seed))
        baseline_p_value = paired_p_value(
            [best.fresh[s] for s in shared], [baseline.by_seed[s] for s in shared]
        )
    return Answer(best, runner_up, baseline, p_value, baseline_p_value)


def best_answer(conn: Connection, sweep: Sweep, runs: list[EvaluationRun] | None = None) -> Answer:
    """The best configuration, its runner-up, the baseline and the tests between them.

    NoResultYet before a trial has completed. ``runs``: the evaluation runs, if
    the caller has read them already.
    """
    top = top_configurations(conn, sweep, 2)
    if not top:
        raise NoResultYet(f"no trial of sweep {sweep.name!r} has completed yet; try again later")
    runs = evaluation_runs(conn, sweep) if runs is None else runs
    return compare(top[0], top[1] if len(top) > 1 else None, baseline_of(runs))


def trial_page(
    conn: Connection,
    sweep: Sweep,
    *,
    after_number: int = -1,
    limit: int = 50,
    state: str | None = None,
) -> list[TrialResult]:
    """Up to ``limit`` trials numbered after ``after_number``, optionally in one state."""
    ids = queries.trial_ids_page(
        conn, study_id_of(conn, sweep), after_number=after_number, limit=limit, state=state
    )
    return _results(conn, ids, SUMMARY_ATTRS)


def trial_result(conn: Connection, sweep: Sweep, number: int) -> TrialResult:
    """Trial ``number`` of the sweep, with its curves."""
    trial_id = queries.trial_id_by_number(conn, study_id_of(conn, sweep), number)
    if trial_id is None:
        raise NotFound(f"sweep {sweep.name!r} has no trial {number}")
    return _results(conn, [trial_id], DETAIL_ATTRS)[0]
