"""What a user asks for when creating a sweep, checked before anything is stored."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from sweep.definition import search
from sweep.definition.evaluation import EVALUATION_SUFFIX
from sweep.definition.search import PRUNERS, SAMPLERS
from sweep.definition.space import Space
from sweep.training.tasks import (
    TaskOptionsError,
    UnknownTaskError,
    get_task,
    has_test_split,
    is_task,
    task_names,
)

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
DEFAULT_TASK = "digits-mlp"
DEFAULT_EPOCHS = 120
MAX_TRIALS = 10000

SamplerName = Literal["tpe", "random", "grid", "qmc", "gp", "cmaes"]
PrunerName = Literal["median", "percentile", "hyperband", "successive-halving", "none"]
assert set(get_args(SamplerName)) == set(SAMPLERS) and set(get_args(PrunerName)) == set(PRUNERS)


class SweepSpec(BaseModel):
    """What a user asks for: which task to tune, over what space, with what budget."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="unique; letters, digits, . _ -")
    description: str = Field("", max_length=2000)
    task: str = Field(DEFAULT_TASK, description="a registered task; see `sweep tasks`")
    task_options: dict[str, Any] = Field(default_factory=dict)
    n_trials: int = Field(
        40,
        ge=1,
        le=MAX_TRIALS,
        strict=True,
        description="configurations to try [grid: the grid's size]",
    )
    epochs: int = Field(DEFAULT_EPOCHS, ge=1, le=10000, strict=True, description="epochs per trial")
    space: Space = Field(default_factory=Space)
    sampler: SamplerName = "tpe"
    sampler_options: dict[str, Any] = Field(
        default_factory=dict,
        validate_default=True,  # stored with its defaults filled in
        description="options of the sampler, e.g. n_startup_trials",
    )
    pruner: PrunerName = "median"
    pruner_options: dict[str, Any] = Field(
        default_factory=dict,
        validate_default=True,
        description="options of the pruner, e.g. n_warmup_steps",
    )
    penalty: Literal["l2", "decoupled"] = Field(
        "l2", description="l2: coupled, Adam(weight_decay=λ); decoupled: AdamW"
    )
    patience: int | None = Field(
        None, ge=1, le=10000, strict=True, description="early-stopping patience"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, strict=True)
    max_attempts: int = Field(3, ge=1, le=20, strict=True, description="attempts per configuration")
    baseline: bool = Field(
        True,
        strict=True,
        description=(
            "also train the unregularized baseline (p=0, λ=0) on the re-evaluation seeds, "
            "for the chart and a paired test against the best"
        ),
    )
    reevaluate_top: int = Field(
        3,
        ge=0,
        le=20,
        strict=True,
        description="after the budget, re-train this many best configurations",
    )
    reevaluate_seeds: int = Field(
        3, ge=1, le=20, strict=True, description="further seeds per re-evaluation"
    )
    race: bool = Field(
        True,
        strict=True,
        description=(
            "after the fixed re-evaluation, add a seed per round to every configuration "
            "still in the race, dropping those whose 95% interval lies above the leader's, "
            "until the leader is decided or race_seeds are spent; false: the fixed "
            "re-evaluation alone"
        ),
    )
    race_seeds: int = Field(
        10, ge=2, le=50, strict=True, description="most fresh seeds per configuration in a race"
    )
    test_split: bool = Field(
        False,
        strict=True,
        description="report the chosen configuration's loss on the held-out test split",
    )
    priority: int = Field(
        0,
        ge=-1000,
        le=1000,
        strict=True,
        description="workers serve the highest priority with work first",
    )
    max_concurrent: int | None = Field(
        None,
        ge=1,
        le=MAX_TRIALS,
        strict=True,
        description="most trials of this sweep running at once; null: no cap",
    )
    warm_start_from: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description=(
            "a sweep with the same task, space and epochs whose finished trials are copied "
            "in first, so the sampler and pruner start informed; outside this budget"
        ),
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.endswith(EVALUATION_SUFFIX):
            raise ValueError(
                f"names ending in {EVALUATION_SUFFIX!r} are reserved for a sweep's "
                "evaluation study; pick another name"
            )
        return name

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if not is_task(task):
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(task_names())}")
        return task

    @field_validator("task_options")
    @classmethod
    def _finite_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        # JSON has no NaN or Infinity; an option holding one could not even be stored.
        for key, value in _walk(options):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"task_options.{key} must be a finite number, not {value}")
        return options

    @field_validator("sampler_options")
    @classmethod
    def _sampler_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "sampler" not in info.data:  # the sampler itself was refused
            return options
        return search.sampler_options(info.data["sampler"], options).model_dump()

    @field_validator("pruner_options")
    @classmethod
    def _pruner_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "pruner" not in info.data or "epochs" not in info.data:
            return options
        return search.pruner_options(info.data["pruner"], options, info.data["epochs"]).model_dump()

    @model_validator(mode="after")
    def _task_options_and_grid(self) -> SweepSpec:
        try:
            task = get_task(self.task)
            task.check_options(self.task_options)
        except (TaskOptionsError, UnknownTaskError) as exc:
            raise ValueError(f"task_options: {exc}") from exc
        if self.test_split and not has_test_split(task, self.task_options):
            raise ValueError(
                f"test_split: task {self.task!r} has no test split with these options "
                "(an .npz needs X_test and y_test); leave test_split false"
            )
        if self.sampler == "grid":
            self._fit_budget_to_grid()
        return self

    def _fit_budget_to_grid(self) -> None:
        grid = self.space.grid()
        if grid is None:
            raise ValueError("sampler 'grid' needs every parameter in space given as choices")
        size = math.prod(len(values) for values in grid.values())
        if "n_trials" not in self.model_fields_set:
            if size > MAX_TRIALS:
                raise ValueError(
                    f"the grid has {size} configurations, more than a sweep may try "
                    f"({MAX_TRIALS}); give n_trials to try a random part of it"
                )
            self.n_trials = size
        elif self.n_trials > size:
            raise ValueError(
                f"n_trials ({self.n_trials}) is more than the grid's {size} configurations; "
                f"leave n_trials out to run the whole grid once"
            )


class SweepScheduling(BaseModel):
    """What may change on a sweep that is already running: how workers share out its trials."""

    model_config = ConfigDict(extra="forbid")

    priority: int = Field(0, ge=-1000, le=1000, strict=True, description="highest first")
    max_concurrent: int | None = Field(
        None, ge=1, le=MAX_TRIALS, strict=True, description="null: no cap"
    )

    @model_validator(mode="after")
    def _changes_something(self) -> SweepScheduling:
        if not self.model_fields_set:
            raise ValueError("give priority, max_concurrent or both")
        return self

    def changes(self) -> dict[str, int | None]:
        """The fields the request gave, with their new values."""
        return self.model_dump(include=self.model_fields_set)


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf value) in nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value
