"""The search space: its schema, its Optuna distributions, and the default space."""

from __future__ import annotations

import math
from typing import Annotated, Any, Self

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from sweep.training.tasks import TrialParams

# Strict: a string or a boolean where a number belongs is a mistake, not something to coerce.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
DROPOUT_PARAMS = ("dropout", "dropout_1", "dropout_2")


class FloatRange(BaseModel):
    """A continuous range; ``log`` samples uniformly in log space."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: FiniteFloat
    high: FiniteFloat
    log: bool = Field(False, strict=True)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not be greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log)


class Choices(BaseModel):
    """A finite set of values, e.g. weight decay in {1e-2, 1e-3, 1e-4, 1e-5}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choices: list[FiniteFloat] = Field(min_length=1, max_length=1000)

    @field_validator("choices")
    @classmethod
    def _unique(cls, values: list[float]) -> list[float]:
        if len(set(values)) != len(values):
            raise ValueError("choices must not repeat a value")
        return values

    def bounds(self) -> tuple[float, float]:
        return min(self.choices), max(self.choices)

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(list(self.choices))


def _kind(value: Any) -> str:
    # A dict with "choices" is a grid, anything else a range: errors then name one kind only.
    has_choices = "choices" in value if isinstance(value, dict) else isinstance(value, Choices)
    return "choices" if has_choices else "range"


ParamSpace = Annotated[
    Annotated[FloatRange, Tag("range")] | Annotated[Choices, Tag("choices")],
    Discriminator(_kind),
]

DEFAULT_DROPOUT = FloatRange(low=0.2, high=0.5)
DEFAULT_WEIGHT_DECAY = FloatRange(low=1e-5, high=1e-2, log=True)


class Space(BaseModel):
    """Which regularizers to tune and over what values.

    Either one shared ``dropout`` for both hidden layers, or ``dropout_1`` and
    ``dropout_2`` for each layer. Dropout values must lie in [0, 1); weight decay ≥ 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dropout: ParamSpace | None = None
    dropout_1: ParamSpace | None = None
    dropout_2: ParamSpace | None = None
    weight_decay: ParamSpace = DEFAULT_WEIGHT_DECAY

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        per_layer = (self.dropout_1, self.dropout_2)
        if self.dropout is not None and any(p is not None for p in per_layer):
            raise ValueError("give either dropout or dropout_1 and dropout_2, not both")
        if (self.dropout_1 is None) != (self.dropout_2 is None):
            raise ValueError("dropout_1 and dropout_2 must be given together")
        for name in DROPOUT_PARAMS:
            param = getattr(self, name)
            if param is not None:
                low, high = param.bounds()
                if low < 0 or high >= 1:
                    raise ValueError(f"{name} must lie in [0, 1), got {low}…{high}")
        low, _ = self.weight_decay.bounds()
        if low < 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {low}")
        return self

    def params(self) -> dict[str, ParamSpace]:
        """The tuned parameters by name, with the default dropout range filled in."""
        if self.dropout_1 is not None and self.dropout_2 is not None:
            dropout = {"dropout_1": self.dropout_1, "dropout_2": self.dropout_2}
        else:
            dropout = {"dropout": self.dropout or DEFAULT_DROPOUT}
        return {**dropout, "weight_decay": self.weight_decay}

    def as_dict(self) -> dict[str, Any]:
        """The space as stored with a sweep, defaults filled in (valid input to this model)."""
        return {name: spec.model_dump(mode="json") for name, spec in self.params().items()}

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions, one per tuned parameter."""
        return {name: spec.distribution() for name, spec in self.params().items()}

    def grid(self) -> dict[str, list[float]] | None:
        """The full grid if every parameter is a set of choices, else None."""
        specs = self.params()
        if not all(isinstance(s, Choices) for s in specs.values()):
            return None
        return {name: list(s.choices) for name, s in specs.items() if isinstance(s, Choices)}


def trial_params(params: dict[str, Any]) -> TrialParams:
    """The training parameters for a trial's Optuna params."""
    shared = params.get("dropout")
    weight_decay = float(params["weight_decay"])
    if not math.isfinite(weight_decay):
        raise ValueError("weight_decay must be finite")
    return TrialParams(
        dropout_1=float(params["dropout_1"] if shared is None else shared),
        dropout_2=float(params["dropout_2"] if shared is None else shared),
        weight_decay=weight_decay,
    )
