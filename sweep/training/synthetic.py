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

from sweep.training.tasks import EpochResult, RunConfig, TaskOptionsError

_OPTIONS = {"epoch_seconds", "fail", "nan_at_epoch", "nan_above_dropout"}


class SyntheticTask:
    """Loss is smallest near dropout 0.35, weight decay 1e-3; options slow it down or break it."""

    name = "synthetic"
    description = (
        "No training: a deterministic loss curve from the params, for testing the "
        "scheduler. Options: epoch_seconds (sleep per epoch), fail (raise in epoch 0), "
        "nan_at_epoch (report NaN from that epoch), nan_above_dropout (only trials whose "
        "dropout is above it go NaN, from nan_at_epoch or epoch 0)."
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

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        options = config.options
        if options.get("fail", False):
            raise RuntimeError("synthetic task asked to fail")
        p = config.params
        optimum = (
            (p.dropout_1 - 0.35) ** 2
            + (p.dropout_2 - 0.35) ** 2
            + (math.log10(max(p.weight_decay, 1e-12)) + 3.0) ** 2 / 20.0
        )
        noise = random.Random(config.seed)
        nan_at = options.get("nan_at_epoch")
        if "nan_above_dropout" in options:
            diverges = p.dropout_1 > float(options["nan_above_dropout"])
            nan_at = (nan_at or 0) if diverges else None
        for epoch in range(config.epochs):
            if options.get("epoch_seconds"):
                time.sleep(float(options["epoch_seconds"]))
            train_loss = 0.1 + optimum + 1.0 / (epoch + 1)
            val_loss = train_loss + 0.05 + 0.01 * noise.random()
            if nan_at is not None and epoch >= nan_at:
                val_loss = math.nan
            yield EpochResult(epoch, train_loss, val_loss, max(0.0, 1.0 - val_loss))
