"""Sweep use cases: create, read, list and control. Functions flush, never commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import optuna
from optuna.storages import RDBStorage
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sweep import queries
from sweep.errors import AlreadyExists, InvalidSweep, InvalidTransition, NotFound
from sweep.models import Sweep, utcnow
from sweep.space import Space
from sweep.study import PRUNERS, SAMPLERS, create_study
from sweep.training.tasks import TaskOptionsError, UnknownTaskError, get_task, task_names

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
DEFAULT_TASK = "digits-mlp"
DEFAULT_EPOCHS = 120

SamplerName = Literal["tpe", "random", "grid", "qmc", "gp"]
PrunerName = Literal["median", "percentile", "hyperband", "successive-halving", "none"]
assert set(get_args(SamplerName)) == set(SAMPLERS) and set(get_args(PrunerName)) == set(PRUNERS)

# Allowed control transitions: action -> (from states, to state).
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("queued", "running"), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("queued", "running", "paused"), "cancelled"),
}


class SweepSpec(BaseModel):
    """What a user asks for: which task to tune, over what space, with what budget."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="unique; letters, digits, . _ -")
    description: str = Field("", max_length=2000)
    task: str = Field(DEFAULT_TASK, description="a registered task; see `sweep tasks`")
    task_options: dict[str, Any] = Field(default_factory=dict)
    n_trials: int = Field(40, ge=1, le=10000, description="configurations to try")
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=10000, description="epochs per trial")
    space: Space = Field(default_factory=Space)
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "median"
    penalty: Literal["l2", "decoupled"] = Field(
        "l2", description="l2: coupled, Adam(weight_decay=λ); decoupled: AdamW"
    )
    patience: int | None = Field(None, ge=1, le=10000, description="early-stopping patience")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    max_attempts: int = Field(3, ge=1, le=20, description="attempts per configuration")

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in task_names():
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(task_names())}")
        return task

    @model_validator(mode="after")
    def _task_options_and_grid(self) -> SweepSpec:
        try:
            get_task(self.task).check_options(self.task_options)
        except (TaskOptionsError, UnknownTaskError) as exc:
            raise ValueError(f"task_options: {exc}") from exc
        if self.sampler == "grid" and self.space.grid() is None:
            raise ValueError("sampler 'grid' needs every parameter in space given as choices")
        return self


@dataclass(frozen=True)
class SweepProgress:
    """A sweep with how far along it is, for display."""

    sweep: Sweep
    counts: dict[str, int]
    configurations: int


def create_sweep(session: Session, storage: RDBStorage, spec: SweepSpec) -> Sweep:
    """Store a new sweep and create its Optuna study; the sweep starts queued."""
    if session.scalar(select(Sweep.id).where(Sweep.name == spec.name)) is not None:
        raise AlreadyExists(f"a sweep named {spec.name!r} already exists; pick another name")
    sweep = Sweep(
        name=spec.name,
        description=spec.description,
        task=spec.task,
        task_options=spec.task_options,
        n_trials=spec.n_trials,
        epochs=spec.epochs,
        space=spec.space.as_dict(),
        sampler=spec.sampler,
        pruner=spec.pruner,
        penalty=spec.penalty,
        patience=spec.patience,
        seed=spec.seed,
        max_attempts=spec.max_attempts,
        status="queued",
        created_at=utcnow(),
    )
    # The study first: on SQLite a flushed insert would hold the write lock Optuna needs.
    try:
        create_study(storage, sweep)
    except optuna.exceptions.DuplicatedStudyError:
        raise AlreadyExists(
            f"an Optuna study named {spec.name!r} already exists in this database"
        ) from None
    session.add(sweep)
    session.flush()
    return sweep


def get_sweep(session: Session, name: str) -> Sweep:
    """The sweep called ``name``."""
    sweep = session.scalar(select(Sweep).where(Sweep.name == name))
    if sweep is None:
        raise NotFound(f"no sweep named {name!r}")
    return sweep


def list_sweeps(
    session: Session, *, status: str | None = None, limit: int = 50, before_id: int | None = None
) -> list[Sweep]:
    """Sweeps newest first, optionally only those in ``status``, older than ``before_id``."""
    query = select(Sweep).order_by(Sweep.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Sweep.status == status)
    if before_id is not None:
        query = query.where(Sweep.id < before_id)
    return list(session.scalars(query))


def control_sweep(session: Session, name: str, action: str) -> Sweep:
    """Pause, resume or cancel a sweep; InvalidTransition if its state does not allow it."""
    if action not in TRANSITIONS:
        raise InvalidSweep(f"unknown action {action!r}")
    sources, target = TRANSITIONS[action]
    sweep = get_sweep(session, name)
    if sweep.status not in sources:
        raise InvalidTransition(f"cannot {action} sweep {name!r}: it is {sweep.status}")
    sweep.status = target
    if target == "cancelled":
        sweep.finished_at = utcnow()
    session.flush()
    return sweep


def sweep_progress(engine: Engine, sweep: Sweep) -> SweepProgress:
    """Trial counts per state and configurations started, read from the study."""
    study = queries.study_id(engine, sweep.name)
    if study is None:
        return SweepProgress(sweep, {}, 0)
    return SweepProgress(
        sweep, queries.state_counts(engine, study), queries.configurations_started(engine, study)
    )
