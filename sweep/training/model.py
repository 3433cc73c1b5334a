"""The seed's MLP: two ReLU hidden layers, each followed by (inverted) dropout."""

from __future__ import annotations

from torch import nn

HIDDEN_1 = 256
HIDDEN_2 = 128


def build_mlp(n_features: int, n_classes: int, dropout_1: float, dropout_2: float) -> nn.Sequential:
    """Linear(in,256) ReLU → Dropout(p1) → Linear(256,128) ReLU → Dropout(p2) → Linear(128,k).

    ``nn.Dropout`` zeroes each unit with probability p and scales survivors by
    1/(1-p) in train mode; it is the identity after ``model.eval()``.
    """
    return nn.Sequential(
        nn.Linear(n_features, HIDDEN_1),
        nn.ReLU(),
        nn.Dropout(dropout_1),
        nn.Linear(HIDDEN_1, HIDDEN_2),
        nn.ReLU(),
        nn.Dropout(dropout_2),
        nn.Linear(HIDDEN_2, n_classes),
    )
