"""Training tasks by name: the contract every task meets, and the registry.

A sweep names a task; a worker looks it up here and iterates over its epochs.
Built-in tasks and those of the ``sweep.tasks`` entry-point group are loaded
lazily, so importing this module does not import torch.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sweep.training.batched import BatchedRun

ENTRY_POINT_GROUP = "sweep.tasks"

BUILTIN_TASKS: dict[str, str] = {
    "digits-mlp": "sweep.training.builtin:DigitsMLP",
    "npz-mlp": "sweep.training.builtin:NpzMLP",
    "synthetic": "sweep.training.synthetic:SyntheticTask",
}


class TaskOptionsError(ValueError):
    """The task's options are not valid; the message says which and why."""


class UnknownTaskError(LookupError):
    """No task of that name is registered."""


@dataclass(frozen=True)
class TrialParams:
    """The regularizers one trial trains with."""

    dropout_1: float
    dropout_2: float
    weight_decay: float


@dataclass(frozen=True)
class RunConfig:
    """Everything a task needs to train one trial."""

    params: TrialParams
    epochs: int
    seed: int
    penalty: str = "l2"  # "l2": coupled, Adam(weight_decay=λ); "decoupled": AdamW
    patience: int | None = None  # stop after this many epochs without a better val loss
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)
    # Also measure the held-out test split, at each epoch that improves the validation loss.
    evaluate_test: bool = False


@dataclass(frozen=True)
class EpochResult:
    """What one epoch of training measured (epochs count from 0)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    # Only with RunConfig.evaluate_test, on epochs that improved the validation loss.
    test_loss: float | None = None
    test_accuracy: float | None = None


class Task(Protocol):
    """A dataset, a model and a training loop, known by name.

    Optional members, looked up with getattr so older tasks keep working:
    ``options`` (option name → what it means, shown by ``GET /v1/tasks``) and
    ``has_test_split(options) -> bool`` (whether ``evaluate_test`` can be honoured).
    """

    name: str
    description: str

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise TaskOptionsError naming the option and the rule if ``options`` is not valid."""

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        """Train one trial, yielding after every epoch; the caller may stop early."""


@runtime_checkable
class BatchableTask(Protocol):
    """A task that can also train several trials at once as one stacked model."""

    def start_batch(self, configs: Sequence[RunConfig], capacity: int) -> BatchedRun:
        """Start training ``configs`` in a batch of ``capacity`` slots."""


def _load(import_path: str) -> Task:
    module_name, _, attr = import_path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    task: Task = factory()
    return task


@functools.cache
def _registered() -> dict[str, str]:
    # Scanning installed packages' entry points takes ~15 ms: once per process, and again
    # only when a name is not found (a plug-in installed since).
    tasks = dict(BUILTIN_TASKS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        tasks.setdefault(ep.name, ep.value)
    return tasks


def _registered_with(name: str) -> dict[str, str]:
    # A name not found may be a plug-in installed since the last scan: scan again first.
    if name not in _registered():
        _registered.cache_clear()
    return _registered()


def task_names() -> list[str]:
    """Names of every task a sweep may use, sorted."""
    return sorted(_registered())


def is_task(name: str) -> bool:
    """Whether a task is registered under ``name``, counting plug-ins installed since."""
    return name in _registered_with(name)


def get_task(name: str) -> Task:
    """The task registered under ``name``."""
    try:
        import_path = _registered_with(name)[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task {name!r}; choose one of: {', '.join(task_names())}"
        ) from None
    return _load(import_path)


def task_options_help(task: Task) -> dict[str, str]:
    """The task's options and what each means (empty if the task does not say)."""
    options = getattr(task, "options", None)
    return {str(k): str(v) for k, v in options.items()} if isinstance(options, Mapping) else {}


def has_test_split(task: Task, options: Mapping[str, Any]) -> bool:
    """Whether the task can report test loss and accuracy with these options."""
    check = getattr(task, "has_test_split", None)
    return bool(check(options)) if callable(check) else False
