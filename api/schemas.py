"""Request and response bodies of the v1 API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sweep.results import TrialResult
from sweep.sweeps import SweepProgress, SweepSpec


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
                }
            ]
        },
    )


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
    pruner: str
    penalty: str
    patience: int | None
    seed: int
    max_attempts: int
    configurations_started: int = Field(description="configurations tried so far (the budget)")
    trials: dict[str, int] = Field(description="number of trials per Optuna state")
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
            pruner=s.pruner,
            penalty=s.penalty,
            patience=s.patience,
            seed=s.seed,
            max_attempts=s.max_attempts,
            configurations_started=progress.configurations,
            trials=progress.counts,
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
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_result(cls, r: TrialResult) -> TrialOut:
        return cls(
            number=r.number,
            state=r.state,
            params=r.params,
            value=r.value,
            epoch=r.epoch,
            metrics=r.metrics,
            attempt=r.attempt,
            worker=r.worker,
            error=r.error,
            started_at=r.started_at,
            finished_at=r.finished_at,
        )


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


class TrialPage(BaseModel):
    items: list[TrialOut]
    next_cursor: str | None


class Health(BaseModel):
    status: str
    detail: str | None = None


class ErrorOut(BaseModel):
    detail: str
