"""The seed's MLP: layer shapes, and dropout that is inverted in training and off in eval."""

from __future__ import annotations

import torch
from torch import nn

from sweep.training.data import load_digits_split
from sweep.training.model import build_mlp


def test_mlp_has_the_seed_layer_shapes_for_digits() -> None:
    data = load_digits_split(300)
    model = build_mlp(data.n_features, data.n_classes, 0.2, 0.5)

    kinds = [type(layer) for layer in model]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    shapes = [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(64, 256), (256, 128), (128, 10)]
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.2, 0.5]


def test_dropout_is_the_identity_in_eval_mode() -> None:
    torch.manual_seed(0)
    with_dropout = build_mlp(64, 10, 0.5, 0.3)
    without_dropout = build_mlp(64, 10, 0.0, 0.0)
    without_dropout.load_state_dict(with_dropout.state_dict())
    x = torch.rand(32, 64)

    with_dropout.eval()
    with torch.no_grad():
        assert torch.equal(with_dropout(x), without_dropout(x))


def test_dropout_in_train_mode_zeroes_about_p_and_scales_survivors_by_1_over_1_minus_p() -> None:
    torch.manual_seed(0)
    p = 0.3
    dropout = next(m for m in build_mlp(64, 10, p, p) if isinstance(m, nn.Dropout))
    dropout.train()

    out = dropout(torch.ones(1_000_000))

    zeroed = (out == 0).float().mean().item()
    assert abs(zeroed - p) < 0.005
    survivors = out[out != 0]
    assert torch.equal(survivors, torch.full_like(survivors, 1 / (1 - p)))
