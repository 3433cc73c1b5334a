"""What the two stacked trainers share: a member's progress, the slots, and the epoch step
that turns an epoch's sums into each member's result (``stacked_mlp.StackedMLPRun``,
``vmapped.VmappedRun``)."""

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
    """Slots of a stacked trainer, which hold a member or are free, and its epoch step.

    A trainer gives its data splits on its device and two methods: train the
    active members one epoch (``_train_one_epoch``) and sum every slot's loss
    and correct predictions on a split, dropout off (``_evaluate``).
    """

    capacity: int
    _members: list[M | None]
    _y_train: torch.Tensor
    _X_val: torch.Tensor
    _y_val: torch.Tensor
    _X_test: torch.Tensor | None = None  # with a test split, members with evaluate_test
    _y_test: torch.Tensor | None = None  # report on it when their validation loss improves

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

    def remove(self, slot: int) -> None:
        """Stop training the member in ``slot``."""
        raise NotImplementedError

    def step_epoch(self) -> list[EpochResult | None]:
        """Train every active member one epoch: its result at its slot, None at free slots.

        A member that has now trained all its epochs, or gone ``patience`` epochs
        without a better validation loss, leaves its slot free. A member with
        ``evaluate_test`` also reports test loss and accuracy on the epochs that
        improve its validation loss, as ``train_epochs`` does. The results of all
        members are read from the device at once, at the end of the epoch.
        """
        members = list(self._members)
        if all(m is None for m in members):
            return [None] * self.capacity
        rows = [self._train_one_epoch(members), *self._evaluate(self._X_val, self._y_val)]
        n_test = 0
        if self._X_test is not None and self._y_test is not None and _any_evaluates_test(members):
            rows.extend(self._evaluate(self._X_test, self._y_test))
            n_test = len(self._y_test)
        sums = torch.stack(rows).tolist()  # the one host sync
        n_train, n_val = len(self._y_train), len(self._y_val)
        return _epoch_results(members, sums, (n_train, n_val, n_test), self.remove)

    def _train_one_epoch(self, members: list[M | None]) -> torch.Tensor:
        """Train the active members one epoch; the summed training loss of every slot."""
        raise NotImplementedError

    def _evaluate(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and correct predictions of every slot on ``X``, ``y``, dropout off."""
        raise NotImplementedError


def _any_evaluates_test(members: Sequence[Member | None]) -> bool:
    return any(m is not None and m.config.evaluate_test for m in members)


def _epoch_results(
    members: Sequence[Member | None],
    sums: list[list[float]],
    rows: tuple[int, int, int],
    remove: Callable[[int], None],
) -> list[EpochResult | None]:
    """Each slot's result from the epoch's summed training loss, validation loss and correct
    count, then test loss and correct count if the test split was evaluated (``sums``, a row
    each, a column per slot; ``rows``: training, validation and test rows, 0 if not);
    members that are done are removed."""
    n_train, n_val, n_test = rows
    results: list[EpochResult | None] = []
    for slot, member in enumerate(members):
        if member is None:
            results.append(None)
            continue
        val_loss = sums[1][slot] / n_val
        train_loss, accuracy = sums[0][slot] / n_train, sums[2][slot] / n_val
        test_loss = test_accuracy = None
        if n_test and member.config.evaluate_test and val_loss < member.best_val_loss:
            test_loss, test_accuracy = sums[3][slot] / n_test, sums[4][slot] / n_test
        results.append(
            EpochResult(member.epoch, train_loss, val_loss, accuracy, test_loss, test_accuracy)
        )
        if member.finish_epoch(val_loss):
            remove(slot)
    return results
