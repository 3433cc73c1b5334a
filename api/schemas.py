"""Request and response bodies of the v1 API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sweep.definition.spec import SweepScheduling, SweepSpec
from sweep.definition.statistics import Summary
from sweep.errors import InvalidToken
from sweep.service.sweeps import SweepProgress
from sweep.service.tokens import TOKEN_NAME_PATTERN, Role, TokenInfo, parse_duration
from sweep.store.results import Answer, Baseline, Configuration, EvaluationRun, TrialResult
from sweep.store.tables import utcnow


class SweepCreate(SweepSpec):
    """Body of POST /v1/sweeps. Only ``name`` is required."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "digits-reg",
                    "task": "digits-mlp",
                    "n_trials": 40,
                    "epochs": 120,
                    "space": {
                        "dropout": {"low": 0.2, "high": 0.5},
                        "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
                    },
                    "sampler": "tpe",
                    "pruner": "median",
                    "penalty": "l2",
                    "seed": 0,
                    "baseline": True,
                    "reevaluate_top": 3,
                    "reevaluate_seeds": 3,
                    "test_split": False,
                }
            ]
        },
    )


class SweepChange(SweepScheduling):
    """Body of PATCH /v1/sweeps/{name}: only ``priority`` and ``max_concurrent``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"priority": 10, "max_concurrent": 4}]}
    )


class SweepExtend(BaseModel):
    """Body of POST /v1/sweeps/{name}/extend."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"n_trials": 20}]})

    n_trials: int = Field(ge=1, le=10_000, description="configurations to add to the budget")


class SweepOut(BaseModel):
    """A sweep, its status and how far along it is."""

    name: str
    description: str
    status: str
    error: str | None
    task: str
    task_options: dict[str, Any]
    n_trials: int
    epochs: int
    space: dict[str, Any]
    sampler: str
    sampler_options: dict[str, Any]
    pruner: str
    pruner_options: dict[str, Any]
    penalty: str
    patience: int | None
    seed: int
    max_attempts: int
    baseline: bool
    reevaluate_top: int
    reevaluate_seeds: int
    race: bool
    race_seeds: int
    test_split: bool
    priority: int = Field(description="workers serve the highest priority with work first")
    max_concurrent: int | None = Field(description="most trials running at once; null: no cap")
    created_by: int | None = Field(description="id of the API token that created the sweep")
    configurations_started: int = Field(description="configurations tried so far (the budget)")
    trials: dict[str, int] = Field(description="number of trials per Optuna state")
    copied_trials: int = Field(
        0, description="finished trials copied from warm_start_from, outside the budget"
    )
    evaluations: dict[str, int] = Field(
        description="evaluation trials (baseline, re-evaluations, test) per Optuna state"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_progress(cls, progress: SweepProgress) -> SweepOut:
        s = progress.sweep
        return cls(
            name=s.name,
            description=s.description,
            status=s.status,
            error=s.error,
            task=s.task,
            task_options=s.task_options,
            n_trials=s.n_trials,
            epochs=s.epochs,
            space=s.space,
            sampler=s.sampler,
            sampler_options=s.sampler_options,
            pruner=s.pruner,
            pruner_options=s.pruner_options,
            penalty=s.penalty,
            patience=s.patience,
            seed=s.seed,
            max_attempts=s.max_attempts,
            baseline=s.baseline,
            reevaluate_top=s.reevaluate_top,
            reevaluate_seeds=s.reevaluate_seeds,
            race=s.race,
            race_seeds=s.race_seeds,
            test_split=s.test_split,
            priority=s.priority,
            max_concurrent=s.max_concurrent,
            created_by=s.created_by,
            configurations_started=progress.configurations,
            trials=progress.counts,
            copied_trials=progress.copied,
            evaluations=progress.evaluations,
            created_at=s.created_at,
            started_at=s.started_at,
            finished_at=s.finished_at,
        )


class SweepPage(BaseModel):
    items: list[SweepOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class TrialOut(BaseModel):
    """One trial: its params, outcome and who ran it."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None = Field(description="best validation loss (COMPLETE trials)")
    epoch: int | None = Field(description="the epoch the value came from")
    metrics: dict[str, Any]
    attempt: int
    worker: str | None
    error: str | None
    reused_from: int | None = Field(
        description="the trial with the same params whose result this one repeats, untrained"
    )
    enqueued: bool = Field(False, description="a configuration queued by a user to try next")
    copied_from: dict[str, Any] | None = Field(
        None,
        description="the sweep and trial number this trial was copied from (a warm start); "
        "outside this sweep's budget and ranking",
    )
    started_at: datetime | None
    finished_at: datetime | None
    seed: int | None = Field(None, description="the trial's torch seed: params + seed reproduce it")

    @classmethod
    def from_result(cls, r: TrialResult) -> TrialOut:
        # The fields are TrialResult's own attributes, by the same names.
        return TrialOut.model_validate(r, from_attributes=True)


class FreshStats(BaseModel):
    """Statistics over fresh seeds: runs that did not select the configuration, so unbiased."""

    fresh_mean: float | None = Field(
        description="mean best validation loss over the fresh seeds; ranks /top once re-evaluated"
    )
    fresh_std: float | None = Field(description="sample standard deviation (null below 2 seeds)")
    fresh_seeds: int = Field(description="fresh seeds behind fresh_mean (0 before re-evaluation)")
    ci95: tuple[float, float] | None = Field(
        description="95% interval of the mean, [low, high], Student-t (null below 2 seeds)"
    )
    fresh_values: dict[str, float] = Field(
        description="best validation loss per fresh seed (seed -> loss), in seed order"
    )

    @staticmethod
    def fields_of(summary: Summary, by_seed: dict[int, float]) -> dict[str, Any]:
        return {
            "fresh_mean": summary.mean,
            "fresh_std": summary.std,
            "fresh_seeds": summary.n,
            "ci95": summary.ci95,
            "fresh_values": {str(s): by_seed[s] for s in sorted(by_seed)},
        }


class ConfigurationOut(TrialOut, FreshStats):
    """A configuration: its search trial, and its statistics over the fresh seeds it ran.

    ``value`` is the search run's: the *selection run*, the one the configuration
    was picked for, so it is biased low and is left out of the statistics.
    Re-evaluated configurations rank by ``fresh_mean``, over seeds that played
    no part in picking them.
    """

    selection_run: bool = Field(
        True, description="always true: value is the search run that selected this configuration"
    )
    ranked_by: Literal["fresh_mean", "value"] = Field(
        description="fresh_mean once re-evaluated, else the selection run's value"
    )

    @classmethod
    def from_configuration(cls, c: Configuration) -> ConfigurationOut:
        return cls(
            **TrialOut.from_result(c.trial).model_dump(),
            **FreshStats.fields_of(c.fresh_summary, c.fresh),
            ranked_by="fresh_mean" if c.fresh else "value",
        )


class EvaluationOut(BaseModel):
    """An evaluation run: the unregularized baseline (p=0, λ=0) on its seed."""

    params: dict[str, Any]
    seed: int
    value: float | None = Field(description="best validation loss")
    epoch: int | None
    metrics: dict[str, Any]

    @classmethod
    def from_run(cls, run: EvaluationRun | None) -> EvaluationOut | None:
        if run is None:
            return None
        return cls(
            params=run.params,
            seed=run.seed,
            value=run.value,
            epoch=run.metrics.get("epoch"),
            metrics=run.metrics,
        )


class BaselineOut(EvaluationOut, FreshStats):
    """The unregularized baseline: its run on the first seed, and statistics over all its seeds.

    It trains on the same fresh seeds as the re-evaluated configurations, so
    /best compares it to the best configuration seed by seed (paired).
    """

    @classmethod
    def from_baseline(cls, baseline: Baseline | None) -> BaselineOut | None:
        if baseline is None:
            return None
        first = EvaluationOut.from_run(baseline.runs[0])
        assert first is not None
        return cls(
            **first.model_dump(),
            **FreshStats.fields_of(baseline.summary, baseline.by_seed),
        )


class RunnerUpOut(BaseModel):
    """The second-best configuration, the one the best must be told apart from."""

    number: int
    params: dict[str, Any]
    fresh_mean: float | None
    ci95: tuple[float, float] | None


class TestOut(BaseModel):
    """The chosen configuration on the held-out test split, at its best validation epoch."""

    loss: float
    accuracy: float
    epoch: int
    seed: int


class BestOut(ConfigurationOut):
    """The best configuration, how sure that is, the baseline beside it, and its test result."""

    evaluation: str = Field(description="search, reevaluation, test or done")
    runner_up: RunnerUpOut | None = Field(description="the second-best configuration, if any")
    p_value: float | None = Field(
        description="Welch's t-test of the best against the runner-up over their fresh seeds "
        "(null below 2 fresh seeds each)"
    )
    decided: bool = Field(
        description="p_value < 0.05: the best is told apart from the runner-up; false: "
        "indistinguishable from it on the seeds run so far"
    )
    baseline: BaselineOut | None = Field(description="p=0, λ=0; null until it has run")
    baseline_p_value: float | None = Field(
        description="paired t-test of the best against the baseline on the seeds they share"
    )
    test: TestOut | None = Field(description="with test_split: null until measured")

    @classmethod
    def from_answer(cls, answer: Answer, evaluation: str, test: TestOut | None) -> BestOut:
        second = answer.runner_up
        runner_up = None
        if second is not None:
            summary = second.fresh_summary
            runner_up = RunnerUpOut(
                number=second.trial.number,
                params=second.trial.params,
                fresh_mean=summary.mean,
                ci95=summary.ci95,
            )
        return cls(
            **ConfigurationOut.from_configuration(answer.best).model_dump(),
            evaluation=evaluation,
            runner_up=runner_up,
            p_value=answer.p_value,
            decided=answer.decided,
            baseline=BaselineOut.from_baseline(answer.baseline),
            baseline_p_value=answer.baseline_p_value,
            test=test,
        )


class TaskOut(BaseModel):
    """A registered training task."""

    name: str
    description: str
    options: dict[str, str] = Field(description="task_options it accepts, and what each means")


class TrialDetail(TrialOut):
    """A trial with its learning curves, one value per epoch run."""

    epochs: list[int]
    train_loss: list[float | None]
    val_loss: list[float | None]
    val_accuracy: list[float | None]

    @classmethod
    def from_result(cls, r: TrialResult) -> TrialDetail:
        curves = r.curves
        val = curves.get("val_loss", [])
        return cls(
            **TrialOut.from_result(r).model_dump(),
            epochs=list(range(len(val))),
            train_loss=_finite(curves.get("train_loss", [])),
            val_loss=_finite(val),
            val_accuracy=_finite(curves.get("val_accuracy", [])),
        )


def _finite(values: list[float]) -> list[float | None]:
    # JSON has no NaN: a diverged epoch is null.
    return [v if v == v and abs(v) != float("inf") else None for v in values]


class TrialEnqueue(BaseModel):
    """Body of POST /v1/sweeps/{name}/trials: one value for every parameter of the space."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"params": {"dropout": 0.3, "weight_decay": 1e-4}}]},
    )

    params: dict[str, Any] = Field(
        max_length=10, description="the configuration to try next, e.g. dropout and weight_decay"
    )


class TrialPage(BaseModel):
    items: list[TrialOut]
    next_cursor: str | None


class ImportanceOut(BaseModel):
    """How much each parameter matters to the validation loss (fANOVA), largest first."""

    importances: dict[str, float] = Field(description="parameter -> share, summing to 1")
    trials: int = Field(description="completed trials they were computed from")


class Health(BaseModel):
    status: str
    detail: str | None = None


class ErrorOut(BaseModel):
    detail: str


class TokenCreate(BaseModel):
    """Body of POST /v1/tokens."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "user", "name": "ci", "expires_in": "30d"}]},
    )

    role: Role = Field(description="reader: GET only; user: also sweeps; admin: also tokens")
    name: str = Field("", pattern=TOKEN_NAME_PATTERN, description="a label to recognise it by")
    expires_in: str | None = Field(
        None, max_length=16, description="lifetime such as 30d, 12h, 90m, 2w; none: no expiry"
    )

    @field_validator("expires_in")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value)
            except InvalidToken as exc:
                raise ValueError(exc.message) from None
        return value


class TokenOut(BaseModel):
    """A token without its secret."""

    id: int
    name: str
    role: str
    active: bool = Field(description="neither revoked nor expired")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_info(cls, info: TokenInfo) -> TokenOut:
        return cls(
            id=info.id,
            name=info.name,
            role=info.role,
            active=info.active(utcnow()),
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
            last_used_at=info.last_used_at,
        )


class TokenCreated(TokenOut):
    """A new token with its secret: shown this once, stored only as a hash."""

    token: str = Field(description="the secret; send it as `Authorization: Bearer <token>`")
