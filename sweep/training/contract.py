"""Sweep your own model: give the data, the model and the loss; sweep trains it.

A subclass of ``ModelTask`` is a task (``sweep.training.tasks.Task``) without a
training loop: sweep's own loop (``train.train_epochs``) trains it with the
trial's dropout and weight decay (coupled L2 or AdamW), its seed, early stopping
and the test split. Register the class in the ``sweep.tasks`` entry-point group
of your package, and a sweep can name it. A task that needs its own loop
implements ``Task`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sweep.training.batched import BatchedRun, start_model_batch
from sweep.training.data import Splits
from sweep.training.dropout import DROPOUT_LAYERS
from sweep.training.tasks import EpochResult, RunConfig, TaskOptionsError, TrialParams
from sweep.training.train import train_epochs

# what a task package imports from here
__all__ = [
    "ModelTask",
    "RunConfig",
    "Splits",
    "TaskOptionsError",
    "TrialParams",
    "check_known",
    "optimization",
    "set_dropouts",
]

DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 32
BATCH_SIZE_MAX = 65_536


@dataclass(frozen=True)
class Optimization:
    """Adam's learning rate and the rows per step of one sweep."""

    lr: float
    batch_size: int


class ModelTask:
    """A task from data, a model factory and a loss; sweep supplies the training loop.

    Subclasses set ``name`` and ``description`` and implement ``data`` and
    ``build``; they may override ``loss`` (cross-entropy by default: the model's
    output is one score per class), ``lr`` and ``batch_size`` (defaults a sweep
    can change with the options ``lr`` and ``batch_size``), and declare options
    of their own in ``task_options`` (name → what it means), checked in
    ``check_options`` (call ``super().check_options(options)`` first).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    task_options: ClassVar[dict[str, str]] = {}
    lr: ClassVar[float] = DEFAULT_LR
    batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE

    def data(self, options: Mapping[str, Any]) -> Splits:
        """The splits as tensors on the CPU: inputs (any shape, rows first) and class labels."""
        raise NotImplementedError(f"{type(self).__name__} must implement data(options)")

    def build(self, dropout: float) -> nn.Module:
        """A freshly initialised model; ``dropout`` is the trial's p (of its first dropout layer).

        Sweep sets the p of every ``nn.Dropout`` layer in the model after this
        returns: the first gets ``dropout_1``, later ones ``dropout_2`` (equal
        when the sweep's space has one ``dropout``).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build(dropout)")

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss over a batch; cross-entropy on class scores unless overridden."""
        return nn.functional.cross_entropy(outputs, labels)

    @property
    def options(self) -> dict[str, str]:
        """Every option a sweep may give, with what it means (``GET /v1/tasks`` shows them)."""
        return {
            **self.task_options,
            "lr": f"Adam's learning rate, in (0, 1] (default {self.lr})",
            "batch_size": f"rows per step, 1…{BATCH_SIZE_MAX} (default {self.batch_size})",
        }

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise TaskOptionsError naming the option and the rule if ``options`` is not valid."""
        check_known(self.name, options, set(self.options))
        optimization(options, self.lr, self.batch_size)

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        """Train one trial with sweep's loop, yielding after every epoch."""
        self.check_options(config.options)
        opt = optimization(config.options, self.lr, self.batch_size)
        return train_epochs(
            self.data(config.options),
            config,
            build=self.model,
            loss=self.loss,
            lr=opt.lr,
            batch_size=opt.batch_size,
        )

    def start_batch(self, configs: Sequence[RunConfig], capacity: int) -> BatchedRun:
        """Train up to ``capacity`` trials of one sweep together (``sweep worker --batch``).

        The members share the sweep's options; ``torch.func.vmap`` trains them as
        one, or, if vmap cannot batch the model, they train one at a time.
        """
        options = configs[0].options
        self.check_options(options)
        opt = optimization(options, self.lr, self.batch_size)
        return start_model_batch(
            self.name,
            self.data(options),
            configs,
            capacity,
            build=self.model,
            loss=self.loss,
            lr=opt.lr,
            batch_size=opt.batch_size,
            train=self.run,
        )

    def model(self, params: TrialParams) -> nn.Module:
        """``build``'s model with the trial's dropout set on each of its dropout layers."""
        model = self.build(params.dropout_1)
        set_dropouts(model, params)
        return model

    def has_test_split(self, options: Mapping[str, Any]) -> bool:
        """Whether ``data`` gives a test split (then ``evaluate_test`` reports on it)."""
        splits = self.data(options)
        return splits.X_test is not None and splits.y_test is not None


def set_dropouts(model: nn.Module, params: TrialParams) -> None:
    """Set the first dropout layer's p to ``dropout_1`` and every later one's to ``dropout_2``."""
    layers = [m for m in model.modules() if isinstance(m, DROPOUT_LAYERS)]
    for i, layer in enumerate(layers):
        layer.p = params.dropout_1 if i == 0 else params.dropout_2


def check_known(task: str, options: Mapping[str, Any], known: set[str]) -> None:
    """Raise TaskOptionsError naming the options ``task`` does not know."""
    unknown = set(options) - known
    if unknown:
        raise TaskOptionsError(
            f"unknown option(s) {', '.join(sorted(unknown))} for task {task!r}; "
            f"valid: {', '.join(sorted(known))}"
        )


def is_int(value: object) -> bool:
    """An int, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def optimization(
    options: Mapping[str, Any],
    default_lr: float = DEFAULT_LR,
    default_batch_size: int = DEFAULT_BATCH_SIZE,
) -> Optimization:
    """The options ``lr`` and ``batch_size``, checked, or the defaults."""
    lr = options.get("lr", default_lr)
    if (
        not isinstance(lr, int | float)
        or isinstance(lr, bool)
        or not math.isfinite(lr)
        or not 0 < lr <= 1
    ):
        raise TaskOptionsError(f"lr must be a number greater than 0 and at most 1; got {lr!r}")
    batch_size = options.get("batch_size", default_batch_size)
    if not is_int(batch_size) or not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise TaskOptionsError(
            f"batch_size must be an integer from 1 to {BATCH_SIZE_MAX}; got {batch_size!r}"
        )
    return Optimization(float(lr), int(batch_size))
