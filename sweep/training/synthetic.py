"""A task that trains nothing: a deterministic loss curve from the params.

It exercises the scheduler (claims, reports, pruning, faults) without torch,
and lets an operator smoke-test a deployment in seconds.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Mapping
from typing import Any

from sweep.training.tasks import EpochResult, RunConfig, TaskOptionsError, TrialParams

_OPTIONS = {"epoch_seconds", "fail", "nan_at_epoch", "nan_above_dropout", "noise"}


def true_loss(params: TrialParams, epochs: int) -> float:
    """The best validation loss a run would reach without noise: its last epoch's.

    With the ``noise`` option every run's validation curve is this curve shifted
    by one Gaussian draw per seed, so this is the mean that statistics over
    seeds must recover.
    """
    return _train_loss(params, epochs - 1) + 0.05


def _train_loss(p: TrialParams, epoch: int) -> float:
    optimum = (
        (p.dropout_1 - 0.35) ** 2
        + (p.dropout_2 - 0.35) ** 2
        + (math.log10(max(p.weight_decay, 1e-12)) + 3.0) ** 2 / 20.0
    )
    return 0.1 + optimum + 1.0 / (epoch + 1)


class SyntheticTask:
    """Loss is smallest near dropout 0.35, weight decay 1e-3; options slow it down or break it."""

    name = "synthetic"
    description = (
        "No training: a deterministic loss curve from the params, for testing the "
        "scheduler. Options: epoch_seconds (sleep per epoch), fail (raise in epoch 0), "
        "nan_at_epoch (report NaN from that epoch), nan_above_dropout (only trials whose "
        "dropout is above it go NaN, from nan_at_epoch or epoch 0), noise (std of one "
        "Gaussian shift of the validation curve per seed and configuration, instead of "
        "per-epoch jitter)."
    )

    def check_options(self, options: Mapping[str, Any]) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise TaskOptionsError(
                f"unknown option(s) {sorted(unknown)} for task 'synthetic'; "
                f"valid: {sorted(_OPTIONS)}"
            )
        seconds = options.get("epoch_seconds", 0.0)
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            raise TaskOptionsError("epoch_seconds must be a number between 0 and 60")
        if not isinstance(options.get("fail", False), bool):
            raise TaskOptionsError("fail must be true or false")
        nan_at = options.get("nan_at_epoch")
        if nan_at is not None and (not isinstance(nan_at, int) or nan_at < 0):
            raise TaskOptionsError("nan_at_epoch must be a non-negative integer")
        above = options.get("nan_above_dropout", 0.0)
        if not isinstance(above, int | float) or not 0 <= above <= 1:
            raise TaskOptionsError("nan_above_dropout must be a number between 0 and 1")
        noise = options.get("noise", 0.0)
        if not isinstance(noise, int | float) or isinstance(noise, bool) or not 0 <= noise <= 10:
            raise TaskOptionsError("noise must be a number between 0 and 10")

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        options = config.options
        if options.get("fail", False):
            raise RuntimeError("synthetic task asked to fail")
        rng = random.Random(config.seed)
        # With "noise": one shift per seed and configuration (configurations do not share
        # their luck on a seed), so the best epoch's loss is true_loss + N(0, noise²).
        shift = None
        if "noise" in options:
            p = config.params
            draw = random.Random(
                f"{config.seed}|{p.dropout_1!r}|{p.dropout_2!r}|{p.weight_decay!r}"
            )
            shift = draw.gauss(0.0, float(options["noise"]))
        nan_at = options.get("nan_at_epoch")
        if "nan_above_dropout" in options:
            diverges = config.params.dropout_1 > float(options["nan_above_dropout"])
            nan_at = (nan_at or 0) if diverges else None
        for epoch in range(config.epochs):
            if options.get("epoch_seconds"):
                time.sleep(float(options["epoch_seconds"]))
            train_loss = _train_loss(config.params, epoch)
            jitter = 0.01 * rng.random() if shift is None else shift
            val_loss = train_loss + 0.05 + jitter
            if nan_at is not None and epoch >= nan_at:
                val_loss = math.nan
            yield EpochResult(epoch, train_loss, val_loss, max(0.0, 1.0 - val_loss))
