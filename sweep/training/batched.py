"""Trials trained together: the interface `sweep worker --batch K` drives, and its trainers.

A ``BatchedRun`` has ``capacity`` slots; ``step_epoch`` trains every member one
epoch, ``remove`` frees a pruned member's slot and ``replace`` starts a new
trial there. Model tasks are trained by ``VmappedRun`` (``torch.func.vmap``
over the task's own model); a model that vmap cannot batch is trained by a
``SerialRun``, one trial at a time through the task's own loop, and the reason
is logged once per task.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch

from sweep.training.data import Splits
from sweep.training.tasks import EpochResult, RunConfig, TrialParams
from sweep.training.train import Loss, ModelFactory
from sweep.training.vmapped import VmappedRun

log = logging.getLogger("sweep.training")

_reported: set[str] = set()  # tasks whose reason to run one at a time was logged


class BatchedRun(Protocol):
    """Up to ``capacity`` trials trained together, each in its own slot."""

    capacity: int

    @property
    def active_slots(self) -> list[int]:
        """Slots whose member is still training."""

    @property
    def free_slots(self) -> list[int]:
        """Slots that can take a new trial with ``replace``."""

    def remove(self, slot: int) -> None:
        """Stop training the member in ``slot`` (e.g. pruned); the others do not notice."""

    def replace(self, slot: int, config: RunConfig) -> None:
        """Start a new trial in the free ``slot``."""

    def step_epoch(self) -> list[EpochResult | None]:
        """Train every active member one epoch: its result at its slot, None at free slots."""


class SerialRun:
    """One slot, trained by a task's own loop: a model that cannot be batched, one trial at
    a time, through the same interface."""

    capacity = 1

    def __init__(
        self, train: Callable[[RunConfig], Iterator[EpochResult]], configs: Sequence[RunConfig]
    ) -> None:
        if len(configs) > 1:
            raise ValueError(f"a SerialRun trains one trial at a time; got {len(configs)}")
        self._train = train
        self._epochs: Iterator[EpochResult] | None = None
        self._config: RunConfig | None = None
        self._best, self._since_best = math.inf, 0
        for config in configs:
            self.replace(0, config)

    @property
    def active_slots(self) -> list[int]:
        """[0] while its trial trains, else []."""
        return [] if self._epochs is None else [0]

    @property
    def free_slots(self) -> list[int]:
        """[0] once its trial has finished or was removed, else []."""
        return [0] if self._epochs is None else []

    def remove(self, slot: int) -> None:
        """Stop the trial (the task's loop is closed)."""
        close = getattr(self._epochs, "close", None)  # a generator's: its loop ends there
        if callable(close):
            close()
        self._epochs = None

    def replace(self, slot: int, config: RunConfig) -> None:
        """Start ``config`` in the free slot."""
        if self._epochs is not None:
            raise ValueError(f"slot {slot} is still training; remove() its member first")
        self._epochs, self._config = iter(self._train(config)), config
        self._best, self._since_best = math.inf, 0

    def step_epoch(self) -> list[EpochResult | None]:
        """Train the trial one epoch; the slot is free after its last one (epochs or patience)."""
        if self._epochs is None or self._config is None:
            return [None]
        result = next(self._epochs, None)
        if result is None:  # the loop ended without another epoch
            self._epochs = None
            return [None]
        if result.val_loss < self._best:
            self._best, self._since_best = result.val_loss, 0
        else:
            self._since_best += 1
        patience = self._config.patience
        if result.epoch + 1 >= self._config.epochs or (
            patience is not None and self._since_best >= patience
        ):
            self.remove(0)
        return [result]


def start_model_batch(
    task: str,
    data: Splits,
    configs: Sequence[RunConfig],
    capacity: int,
    *,
    build: ModelFactory,
    loss: Loss,
    lr: float,
    batch_size: int,
    train: Callable[[RunConfig], Iterator[EpochResult]],
) -> BatchedRun:
    """``configs`` of ``task`` in a ``VmappedRun`` of ``capacity`` slots, or in a
    ``SerialRun`` (``train`` one trial at a time) if vmap cannot batch the model."""
    device = configs[0].device
    reason = vmap_obstacle(data, build=build, loss=loss, batch_size=batch_size, device=device)
    if reason is not None:
        if task not in _reported:
            _reported.add(task)
            log.warning(
                "task %r trains one trial at a time under --batch: vmap cannot batch its "
                "model (%s)",
                task,
                reason,
            )
        return SerialRun(train, configs)
    return VmappedRun(
        data,
        configs,
        build=build,
        loss=loss,
        lr=lr,
        batch_size=batch_size,
        device=device,
        capacity=capacity,
    )


def vmap_obstacle(
    data: Splits, *, build: ModelFactory, loss: Loss, batch_size: int, device: str = "cpu"
) -> str | None:
    """Why ``VmappedRun`` cannot train this model (the error of one trial step), or None.

    Two members with dropout train one epoch on a minibatch and a few validation
    rows, without touching the caller's random state.
    """
    rows = min(batch_size, len(data.y_train))
    sample = Splits(data.X_train[:rows], data.y_train[:rows], data.X_val[:8], data.y_val[:8])
    configs = [RunConfig(TrialParams(0.1, 0.1, 1e-4), 1, seed, device=device) for seed in (0, 1)]
    try:
        with torch.random.fork_rng(devices=[]):
            run = VmappedRun(
                sample, configs, build=build, loss=loss, lr=1e-3, batch_size=rows, device=device
            )
            run.step_epoch()
    except Exception as exc:  # any failure means: not batchable; the reason says which
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
