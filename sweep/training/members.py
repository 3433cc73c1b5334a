"""What the two stacked trainers share: a member's progress and how an epoch's sums
become each member's result (``stacked_mlp.StackedMLPRun``, ``vmapped.VmappedRun``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from sweep.training.tasks import EpochResult, RunConfig


@dataclass
class Member:
    """One trial's place in a stack: its config and how far it has come."""

    config: RunConfig
    masks: torch.Generator  # its dropout masks
    shuffle: torch.Generator  # its minibatch order, as in train_epochs
    epoch: int = 0
    best_val_loss: float = math.inf
    epochs_since_best: int = 0

    def finish_epoch(self, val_loss: float) -> bool:
        """Count the epoch just trained; whether the member is done (all its epochs, or
        ``patience`` epochs without a better validation loss)."""
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.epochs_since_best = val_loss, 0
        else:
            self.epochs_since_best += 1
        self.epoch += 1
        patience = self.config.patience
        out_of_patience = patience is not None and self.epochs_since_best >= patience
        return self.epoch >= self.config.epochs or out_of_patience


M = TypeVar("M", bound=Member)


class MemberSlots(Generic[M]):
    """Slot bookkeeping of a stacked trainer: which slots train a member, which are free."""

    _members: list[M | None]

    @property
    def active_slots(self) -> list[int]:
        """Slots whose member is still training."""
        return [k for k, m in enumerate(self._members) if m is not None]

    @property
    def free_slots(self) -> list[int]:
        """Slots that can take a new trial with ``replace``."""
        return [k for k, m in enumerate(self._members) if m is None]

    def config(self, slot: int) -> RunConfig | None:
        """The config of the member training in ``slot``, or None if the slot is free."""
        member = self._members[slot]
        return member.config if member is not None else None


def epoch_results(
    members: Sequence[Member | None],
    sums: list[list[float]],
    n_train: int,
    n_val: int,
    remove: Callable[[int], None],
) -> list[EpochResult | None]:
    """Each slot's result from the epoch's summed training loss, validation loss and correct
    count (``sums``, one row each, a column per slot); members that are done are removed."""
    results: list[EpochResult | None] = []
    for slot, member in enumerate(members):
        if member is None:
            results.append(None)
            continue
        val_loss = sums[1][slot] / n_val
        train_loss, accuracy = sums[0][slot] / n_train, sums[2][slot] / n_val
        results.append(EpochResult(member.epoch, train_loss, val_loss, accuracy))
        if member.finish_epoch(val_loss):
            remove(slot)
    return results
