"""A sweep task written against sweep's model contract: a small CNN on the 8x8 digits.

sweep trains it with its own loop; this file gives only the data, the model and
(by default, cross-entropy) the loss.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from sweep.training.contract import ModelTask, Splits, TaskOptionsError

VAL_SIZE = 600


class DigitsCNN(ModelTask):
    """Conv(1→8) ReLU → Conv(8→16) ReLU → MaxPool → Dropout(p₁) → Linear(256→64) ReLU →
    Dropout(p₂) → Linear(64→10), on scikit-learn's digits as 1x8x8 images."""

    name = "digits-cnn"
    description = (
        "Example plug-in: a small CNN on scikit-learn's 8x8 digits as 1x8x8 images, "
        "with dropout before each linear layer."
    )
    task_options: ClassVar[dict[str, str]] = {
        "train_size": "training images, 20…1000 (default 300); 600 validate, the rest test",
    }
    lr = 1e-3
    batch_size = 32

    def check_options(self, options: Mapping[str, Any]) -> None:
        """The contract checks lr and batch_size; this adds train_size."""
        super().check_options(options)
        _train_size(options)

    def data(self, options: Mapping[str, Any]) -> Splits:
        """Train, validation and test images as tensors (read once per process)."""
        return _digits(_train_size(options))

    def build(self, dropout: float) -> nn.Module:
        """A fresh CNN; sweep sets its two dropout layers to the trial's p₁ and p₂."""
        return nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16 x 4 x 4
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(16 * 4 * 4, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, 10),
        )


def _train_size(options: Mapping[str, Any]) -> int:
    value = options.get("train_size", 300)
    if isinstance(value, bool) or not isinstance(value, int) or not 20 <= value <= 1000:
        raise TaskOptionsError(f"train_size must be an integer from 20 to 1000; got {value!r}")
    return value


@functools.cache
def _digits(train_size: int) -> Splits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    images = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    labels = torch.tensor(y, dtype=torch.int64)
    rest, val = train_test_split(range(len(y)), test_size=VAL_SIZE, stratify=y, random_state=0)
    train, test = train_test_split(rest, train_size=train_size, stratify=y[rest], random_state=0)
    return Splits(
        images[train], labels[train], images[val], labels[val], images[test], labels[test]
    )
