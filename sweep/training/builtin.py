"""The built-in tasks: the seed's MLP on the bundled digits, and on the user's own .npz."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sweep.training.contract import (
    BATCH_SIZE_MAX,
    DEFAULT_BATCH_SIZE,
    DEFAULT_LR,
    ModelTask,
    Optimization,
    check_known,
    is_int,
    optimization,
)
from sweep.training.data import (
    DIGITS_TRAIN_SIZE_MAX,
    DIGITS_TRAIN_SIZE_MIN,
    Splits,
    check_npz,
    load_digits_split,
    load_npz,
)
from sweep.training.model import build_mlp
from sweep.training.tasks import EpochResult, RunConfig, TaskOptionsError
from sweep.training.train import train_epochs

if TYPE_CHECKING:
    from torch import nn

    from sweep.training.stacked_mlp import StackedMLPRun

DEFAULT_TRAIN_SIZE = 300  # small enough that p=0, λ=0 overfits within the default epochs
DIGITS_FEATURES, DIGITS_CLASSES = 64, 10


class DigitsMLP(ModelTask):
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
    task_options: ClassVar[dict[str, str]] = {
        "train_size": f"training rows, {DIGITS_TRAIN_SIZE_MIN}…{DIGITS_TRAIN_SIZE_MAX} "
        f"(default {DEFAULT_TRAIN_SIZE}); 600 rows validate, the rest are the test split",
    }

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise TaskOptionsError naming the option and the rule if ``options`` is not valid."""
        super().check_options(options)
        _train_size(options)

    def data(self, options: Mapping[str, Any]) -> Splits:
        """The digits split for the option ``train_size`` (cached: every trial reads it)."""
        return _digits(_train_size(options))

    def build(self, dropout: float) -> nn.Module:
        """The seed's MLP sized for the digits."""
        return build_mlp(DIGITS_FEATURES, DIGITS_CLASSES, dropout, dropout)

    def start_batch(self, configs: Sequence[RunConfig], capacity: int) -> StackedMLPRun:
        """Train up to ``capacity`` trials of one sweep together (they share its options)."""
        options = configs[0].options
        self.check_options(options)
        return _start_batch((self.data(options), optimization(options)), configs, capacity)


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
        check_known(self.name, options, {"path", "lr", "batch_size"})
        optimization(options)
        check_npz(_path(options))

    def run(self, config: RunConfig) -> Iterator[EpochResult]:
        """Train one trial on the file's splits, yielding after every epoch."""
        data, opt = self._load(config.options)
        return train_epochs(data, config, lr=opt.lr, batch_size=opt.batch_size)

    def start_batch(self, configs: Sequence[RunConfig], capacity: int) -> StackedMLPRun:
        """Train up to ``capacity`` trials of one sweep together (they share its options)."""
        return _start_batch(self._load(configs[0].options), configs, capacity)

    def _load(self, options: Mapping[str, Any]) -> tuple[Splits, Optimization]:
        check_known(self.name, options, {"path", "lr", "batch_size"})
        opt = optimization(options)
        file = Path(_path(options)).expanduser().resolve()
        stat = file.stat() if file.is_file() else None
        # keyed on mtime and size so a rewritten file is read again
        data = _npz(str(file), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
        return data, opt

    def has_test_split(self, options: Mapping[str, Any]) -> bool:
        """Whether the file holds X_test and y_test."""
        return load_npz(_path(options)).X_test is not None


def _start_batch(
    loaded: tuple[Splits, Optimization], configs: Sequence[RunConfig], capacity: int
) -> StackedMLPRun:
    from sweep.training.stacked_mlp import StackedMLPRun

    data, opt = loaded
    return StackedMLPRun(
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


def _train_size(options: Mapping[str, Any]) -> int:
    value = options.get("train_size", DEFAULT_TRAIN_SIZE)
    if not is_int(value) or not DIGITS_TRAIN_SIZE_MIN <= value <= DIGITS_TRAIN_SIZE_MAX:
        raise TaskOptionsError(
            f"train_size must be an integer from {DIGITS_TRAIN_SIZE_MIN} to "
            f"{DIGITS_TRAIN_SIZE_MAX}; got {value!r}"
        )
    return int(value)


def _path(options: Mapping[str, Any]) -> str:
    path = options.get("path")
    if not isinstance(path, str) or not path.strip():
        raise TaskOptionsError(
            f"option path is required: the .npz file's path as the worker sees it; got {path!r}"
        )
    return path
