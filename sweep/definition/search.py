"""Search choices: the samplers and pruners a sweep can name, each with its checked options.

Every option model forbids unknown keys and bounds every value, so a typo or an
impossible setting is a 422 when the sweep is created, not an error in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, TypeVar

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sweep.definition.space import Space


class Options(BaseModel):
    """Options of one sampler or pruner; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- samplers -------------------------------------------------------------------------------


class SamplerOptions(Options):
    # Grid order and QMC scrambling are drawn from the seed: every claim must use the same one.
    shared_seed: ClassVar[bool] = False

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        raise NotImplementedError


class TpeOptions(SamplerOptions):
    """Tree-structured Parzen estimator (the default)."""

    n_startup_trials: int = Field(10, ge=0, le=10000, description="random trials first")
    n_ei_candidates: int = Field(24, ge=1, le=10000, description="candidates per proposal")
    multivariate: bool = Field(True, description="model dropout and weight decay jointly")
    constant_liar: bool = Field(True, description="keep parallel workers apart")

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, **self.model_dump())


class RandomOptions(SamplerOptions):
    """Independent uniform draws; no options."""

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


class GridOptions(SamplerOptions):
    """Every combination of the ``choices`` once, in an order shuffled by the seed; no options."""

    shared_seed = True

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        return optuna.samplers.GridSampler(space.grid() or {}, seed=seed)


class QmcOptions(SamplerOptions):
    """A quasi-Monte Carlo sequence that covers the space evenly."""

    shared_seed = True
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: bool = Field(True, description="randomize the sequence with the seed")

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        return optuna.samplers.QMCSampler(seed=seed, **self.model_dump())


class GpOptions(SamplerOptions):
    """Gaussian-process Bayesian optimization."""

    n_startup_trials: int = Field(10, ge=0, le=10000, description="random trials first")
    deterministic_objective: bool = Field(False, description="the loss has no seed noise")

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        return optuna.samplers.GPSampler(seed=seed, **self.model_dump())


class CmaEsOptions(SamplerOptions):
    """CMA-ES over the continuous parameters (``choices`` are drawn at random)."""

    n_startup_trials: int = Field(1, ge=0, le=10000, description="random trials first")
    popsize: int | None = Field(None, ge=2, le=10000, description="population per generation")
    use_separable_cma: bool = Field(False, description="diagonal covariance (sep-CMA-ES)")
    lr_adapt: bool = Field(False, description="adapt the learning rate (noisy losses)")
    consider_pruned_trials: bool = Field(False, description="learn from pruned trials too")

    @model_validator(mode="after")
    def _compatible(self) -> Self:
        if self.lr_adapt and self.use_separable_cma:
            raise ValueError("lr_adapt and use_separable_cma cannot be combined")
        return self

    def sampler(self, space: Space, seed: int) -> BaseSampler:
        return optuna.samplers.CmaEsSampler(seed=seed, **self.model_dump())


SAMPLER_OPTIONS: dict[str, type[SamplerOptions]] = {
    "tpe": TpeOptions,
    "random": RandomOptions,
    "grid": GridOptions,
    "qmc": QmcOptions,
    "gp": GpOptions,
    "cmaes": CmaEsOptions,
}


# ---- pruners --------------------------------------------------------------------------------


class PrunerOptions(Options):
    def resolved(self, epochs: int) -> Self:
        """These options with epoch-dependent defaults filled in, checked against ``epochs``."""
        return self

    def pruner(self, epochs: int) -> BasePruner:
        raise NotImplementedError


def default_warmup(epochs: int) -> int:
    """Half the epochs: regularized models learn slower early and win late, so a short
    warm-up prunes exactly the configurations a sweep is looking for."""
    return max(1, epochs // 2)


def _at_most_epochs(name: str, value: int | None, epochs: int) -> None:
    if value is not None and value > epochs:
        raise ValueError(f"{name} ({value}) must not exceed epochs ({epochs})")


class MedianOptions(PrunerOptions):
    """Stop a trial whose loss is worse than the median of earlier trials at the same epoch."""

    n_startup_trials: int = Field(5, ge=0, le=10000, description="trials never pruned")
    n_warmup_steps: int | None = Field(
        None, ge=0, le=10000, description="epochs before pruning [default: half the epochs]"
    )
    interval_steps: int = Field(1, ge=1, le=10000, description="check every this many epochs")
    n_min_trials: int = Field(1, ge=1, le=10000, description="trials reporting an epoch first")

    def resolved(self, epochs: int) -> Self:
        _at_most_epochs("n_warmup_steps", self.n_warmup_steps, epochs)
        if self.n_warmup_steps is None:
            return self.model_copy(update={"n_warmup_steps": default_warmup(epochs)})
        return self

    def pruner(self, epochs: int) -> BasePruner:
        return optuna.pruners.MedianPruner(**self.resolved(epochs).model_dump())


class PercentileOptions(MedianOptions):
    """Like median, at another percentile: 25 stops all but the best quarter."""

    percentile: float = Field(25.0, ge=0, le=100, allow_inf_nan=False)

    def pruner(self, epochs: int) -> BasePruner:
        return optuna.pruners.PercentilePruner(**self.resolved(epochs).model_dump())


class HyperbandOptions(PrunerOptions):
    """Hyperband: successive halving over several brackets of minimum epochs."""

    min_resource: int | None = Field(
        None, ge=1, le=10000, description="epochs before the first cut [default: half the epochs]"
    )
    max_resource: int | None = Field(
        None, ge=1, le=10000, description="epochs of a full trial [default: epochs]"
    )
    reduction_factor: int = Field(3, ge=2, le=100, description="keep 1 in this many per rung")
    bootstrap_count: int = Field(0, ge=0, le=10000, description="trials per rung before cutting")

    def resolved(self, epochs: int) -> Self:
        _at_most_epochs("min_resource", self.min_resource, epochs)
        _at_most_epochs("max_resource", self.max_resource, epochs)
        low = self.min_resource if self.min_resource is not None else default_warmup(epochs)
        high = self.max_resource if self.max_resource is not None else epochs
        if low > high:
            raise ValueError(f"min_resource ({low}) must not exceed max_resource ({high})")
        return self.model_copy(update={"min_resource": low, "max_resource": high})

    def pruner(self, epochs: int) -> BasePruner:
        return optuna.pruners.HyperbandPruner(**self.resolved(epochs).model_dump())


class SuccessiveHalvingOptions(PrunerOptions):
    """Asynchronous successive halving."""

    min_resource: int | None = Field(
        None, ge=1, le=10000, description="epochs before the first cut [default: half the epochs]"
    )
    reduction_factor: int = Field(4, ge=2, le=100, description="keep 1 in this many per rung")
    min_early_stopping_rate: int = Field(0, ge=0, le=100, description="rungs skipped")
    bootstrap_count: int = Field(0, ge=0, le=10000, description="trials per rung before cutting")

    def resolved(self, epochs: int) -> Self:
        _at_most_epochs("min_resource", self.min_resource, epochs)
        if self.min_resource is None:
            return self.model_copy(update={"min_resource": default_warmup(epochs)})
        return self

    def pruner(self, epochs: int) -> BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(**self.resolved(epochs).model_dump())


class NoPrunerOptions(PrunerOptions):
    """Every trial runs all its epochs (early stopping by ``patience`` still applies)."""

    def pruner(self, epochs: int) -> BasePruner:
        return optuna.pruners.NopPruner()


PRUNER_OPTIONS: dict[str, type[PrunerOptions]] = {
    "median": MedianOptions,
    "percentile": PercentileOptions,
    "hyperband": HyperbandOptions,
    "successive-halving": SuccessiveHalvingOptions,
    "none": NoPrunerOptions,
}


# ---- checking a request ---------------------------------------------------------------------


def sampler_options(name: str, options: Mapping[str, Any] | None) -> SamplerOptions:
    """``options`` checked against sampler ``name``; ValueError says what is wrong."""
    return _checked("sampler", SAMPLER_OPTIONS, name, options)


def pruner_options(name: str, options: Mapping[str, Any] | None, epochs: int) -> PrunerOptions:
    """``options`` checked against pruner ``name``, epoch-dependent defaults filled in."""
    return _checked("pruner", PRUNER_OPTIONS, name, options).resolved(epochs)


OptionsT = TypeVar("OptionsT", bound=Options)


def _checked(
    kind: str, models: Mapping[str, type[OptionsT]], name: str, options: Mapping[str, Any] | None
) -> OptionsT:
    if name not in models:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(models)}")
    model = models[name]
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise ValueError(_explain(kind, name, model, exc)) from None


def _explain(kind: str, name: str, model: type[Options], exc: ValidationError) -> str:
    valid = ", ".join(model.model_fields) or "none"
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown option {where!r} for {kind} {name!r} (valid: {valid})")
        elif where:
            problems.append(f"{where}: {error['msg']}")
        else:  # a rule across options, e.g. two that cannot be combined
            problems.append(str(error["msg"]).removeprefix("Value error, "))
    return "; ".join(problems)


SAMPLERS = tuple(SAMPLER_OPTIONS)
PRUNERS = tuple(PRUNER_OPTIONS)


def make_sampler(
    name: str,
    space: Space,
    seed: int,
    options: Mapping[str, Any] | None = None,
    *,
    trials_so_far: int = 0,
) -> BaseSampler:
    """The sampler called ``name`` with its stored ``options``.

    Samplers that draw at random are seeded ``seed + trials_so_far``, so parallel
    workers differ and one worker's run is reproducible; the grid and QMC take
    ``seed`` itself, because every claim must see the same order.
    """
    checked = sampler_options(name, options)
    return checked.sampler(space, seed if checked.shared_seed else seed + trials_so_far)


def make_pruner(name: str, epochs: int, options: Mapping[str, Any] | None = None) -> BasePruner:
    """The pruner called ``name`` with its stored ``options``; warm-ups default to half the
    epochs (see sweep.search.default_warmup)."""
    return pruner_options(name, options, epochs).pruner(epochs)
