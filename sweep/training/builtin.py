"""The built-in tasks: the seed's MLP on the bundled digits, and on the user's own .npz."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sweep.training.data import (
    DIGITS_TRAIN_SIZE_MAX,
    DIGITS_TRAIN_SIZE_MIN,
    Splits,
    check_npz,
    load_digits_split,
    load_npz,
)
from sweep.training.tasks import EpochResult, RunConfig, TaskOptionsError
from sweep.training.train import train_epochs

if TYPE_CHECKING:
    from sweep.training.batched import BatchedRun

DEFAULT_TRAIN_SIZE = 300  # small enough that p=0, λ=0 overfits within the default epochs
DEFAULT_LR = 1e-3
DEFAULT_BATCH_SIZE = 32
BATCH_SIZE_MAX = 65_536


@dataclass(frozen=True)
class _Optimization:
    lr: float
    batch_size: int


class DigitsMLP:
    """The seed's MLP (64→256→128→10) on a small, fixed subset of scikit-learn's digits."""

    name = "digits-mlp"
    description = (
        "scikit-learn's bundled 8x8 digits (no download), the seed's MLP 64→256→128→10 "
        "with dropout after each hidden layer. A small training subset makes it overfit "
        "without regularization. Options: train_size (training rows, "
        f"{DIGITS_TRAIN_SIZE_MIN}…{DIGITS_TRAIN_SIZE_MAX}, default {DEFAULT_TRAIN_SIZE}; "
        f"600 rows validate), lr (Adam, default {DEFAULT_LR}), "
        f"batch_size (default {DEFAULT_BATCH_SIZE})."
    )
    options: ClassVar[dict[str, str]] = {
        "train_size": f"training rows, {DIGITS_TRAIN_SIZE_MIN}…{DIGITS_TRAIN_SIZE_MAX} "
        f"(default {DEFAULT_TRAIN_SIZE}); 600 rows validate, the rest are the test split",
        "lr": f"Adam's learning rate, in (0, 1] (default {DEFAULT_LR})",
        "batch_size": f"rows per step, 1…{BATCH_SIZE_MAX} (default {DEFAULT_BATCH_SIZE})",
    }

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise TaskOptionsError naming the option and the rule if ``options`` is not valid."""
        _check_known(self.name, options, {"train_size", "lr", "batch_size"})
        _train_size(options)
        _optimization(options)

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        """Train one trial on the digits, yielding after every epoch."""
        data, opt = self._load(config.options)
        return train_epochs(data, config, lr=opt.lr, batch_size=opt.batch_size)

    def has_test_split(self, options: Mapping[str, Any]) -> bool:
        """The digits left over after training and validation are the test split."""
        return True

    def start_batch(self, configs: Sequence[RunConfig], capacity: int) -> BatchedRun:
        """Train up to ``capacity`` trials of one sweep together (they share its options)."""
        return _start_batch(self._load(configs[0].options), configs, capacity)

    def _load(self, options: Mapping[str, Any]) -> tuple[Splits, _Optimization]:
        self.check_options(options)
        return _digits(_train_size(options)), _optimization(options)


class NpzMLP:
    """The seed's MLP on the user's own splits, saved with numpy.savez."""

    name = "npz-mlp"
    description = (
        "The seed's MLP (in→256→128→classes) on your own .npz with keys X_train, y_train, "
        "X_val, y_val (optionally X_test, y_test); labels are class indices 0, 1, 2, …. "
        "Options: path (required; as the worker sees it), lr (Adam, default "
        f"{DEFAULT_LR}), batch_size (default {DEFAULT_BATCH_SIZE})."
    )
    options: ClassVar[dict[str, str]] = {
        "path": "the .npz file as the worker sees it (required; checked on submission)",
        "lr": f"Adam's learning rate, in (0, 1] (default {DEFAULT_LR})",
        "batch_size": f"rows per step, 1…{BATCH_SIZE_MAX} (default {DEFAULT_BATCH_SIZE})",
    }

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise TaskOptionsError if an option or the file it names is not valid."""
        _check_known(self.name, options, {"path", "lr", "batch_size"})
        _optimization(options)
        check_npz(_path(options))

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        """Train one trial on the file's splits, yielding after every epoch."""
        data, opt = self._load(config.options)
        return train_epochs(data, config, lr=opt.lr, batch_size=opt.batch_size)

    def start_batch(self, configs: Sequence[RunConfig], capacity: int) -> BatchedRun:
        """Train up to ``capacity`` trials of one sweep together (they share its options)."""
        return _start_batch(self._load(configs[0].options), configs, capacity)

    def _load(self, options: Mapping[str, Any]) -> tuple[Splits, _Optimization]:
        _check_known(self.name, options, {"path", "lr", "batch_size"})
        opt = _optimization(options)
        file = Path(_path(options)).expanduser().resolve()
        stat = file.stat() if file.is_file() else None
        # keyed on mtime and size so a rewritten file is read again
        data = _npz(str(file), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
        return data, opt

    def has_test_split(self, options: Mapping[str, Any]) -> bool:
        """Whether the file holds X_test and y_test."""
        return load_npz(_path(options)).X_test is not None


def _start_batch(
    loaded: tuple[Splits, _Optimization], configs: Sequence[RunConfig], capacity: int
) -> BatchedRun:
    from sweep.training.batched import BatchedRun

    data, opt = loaded
    return BatchedRun(
        data,
        configs,
        lr=opt.lr,
        batch_size=opt.batch_size,
        device=configs[0].device,
        capacity=capacity,
    )


@functools.lru_cache(maxsize=4)
def _digits(train_size: int) -> Splits:
    return load_digits_split(train_size)


@functools.lru_cache(maxsize=2)
def _npz(path: str, mtime_ns: int, size: int) -> Splits:
    return load_npz(path)


def _check_known(task: str, options: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(options) - known
    if unknown:
        raise TaskOptionsError(
            f"unknown option(s) {', '.join(sorted(unknown))} for task {task!r}; "
            f"valid: {', '.join(sorted(known))}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _train_size(options: Mapping[str, Any]) -> int:
    value = options.get("train_size", DEFAULT_TRAIN_SIZE)
    if not _is_int(value) or not DIGITS_TRAIN_SIZE_MIN <= value <= DIGITS_TRAIN_SIZE_MAX:
        raise TaskOptionsError(
            f"train_size must be an integer from {DIGITS_TRAIN_SIZE_MIN} to "
            f"{DIGITS_TRAIN_SIZE_MAX}; got {value!r}"
        )
    return int(value)


def _optimization(options: Mapping[str, Any]) -> _Optimization:
    lr = options.get("lr", DEFAULT_LR)
    if (
        not isinstance(lr, int | float)
        or isinstance(lr, bool)
        or not math.isfinite(lr)
        or not 0 < lr <= 1
    ):
        raise TaskOptionsError(f"lr must be a number greater than 0 and at most 1; got {lr!r}")
    batch_size = options.get("batch_size", DEFAULT_BATCH_SIZE)
    if not _is_int(batch_size) or not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise TaskOptionsError(
            f"batch_size must be an integer from 1 to {BATCH_SIZE_MAX}; got {batch_size!r}"
        )
    return _Optimization(float(lr), int(batch_size))


def _path(options: Mapping[str, Any]) -> str:
    path = options.get("path")
    if not isinstance(path, str) or not path.strip():
        raise TaskOptionsError(
            f"option path is required: the .npz file's path as the worker sees it; got {path!r}"
        )
    return path
