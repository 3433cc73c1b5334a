"""The model contract: a task from data, build(dropout) and a loss, trained by sweep's loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from sweep.training.builtin import DigitsMLP
from sweep.training.contract import ModelTask, Splits, set_dropouts
from sweep.training.data import load_digits_split
from sweep.training.model import build_mlp
from sweep.training.tasks import RunConfig, TaskOptionsError, TrialParams, task_options_help
from sweep.training.train import train_epochs


class TinyImages(ModelTask):
    """Digits as 1x8x8 images through a conv layer and two dropout layers."""

    name = "tiny-images"
    description = "a test task"

    def data(self, options: Mapping[str, Any]) -> Splits:
        d = load_digits_split(100)
        assert d.X_test is not None and d.y_test is not None
        return Splits(
            d.X_train.view(-1, 1, 8, 8),
            d.y_train,
            d.X_val.view(-1, 1, 8, 8),
            d.y_val,
            d.X_test.view(-1, 1, 8, 8),
            d.y_test,
        )

    def build(self, dropout: float) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(256, 32),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(32, 10),
        )


def test_a_contract_task_trains_exactly_as_the_loop_does_on_the_same_model_and_seed() -> None:
    config = RunConfig(TrialParams(0.3, 0.1, 1e-3), epochs=3, seed=5, penalty="decoupled")
    # DigitsMLP is written against the contract; train_epochs alone builds the seed's MLP
    through_contract = list(DigitsMLP().run(config))
    loop_alone = list(train_epochs(load_digits_split(300), config, lr=1e-3, batch_size=32))
    assert through_contract == loop_alone


def test_every_dropout_layer_gets_its_trials_p_first_one_then_the_second() -> None:
    model = nn.Sequential(nn.Dropout(0.9), nn.Linear(2, 2), nn.Dropout2d(0.9), nn.Dropout(0.9))
    set_dropouts(model, TrialParams(0.1, 0.2, 0.0))
    assert [m.p for m in model if not isinstance(m, nn.Linear)] == [0.1, 0.2, 0.2]

    mlp = TinyImages().model(TrialParams(0.25, 0.4, 0.0))
    assert [m.p for m in mlp.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.4]


def test_image_inputs_train_with_test_split_early_stopping_and_own_loss() -> None:
    class HalvedLoss(TinyImages):
        def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(outputs, labels) / 2

    config = RunConfig(
        TrialParams(0.2, 0.2, 1e-4), epochs=4, seed=0, evaluate_test=True, patience=1
    )
    plain, halved = list(TinyImages().run(config)), list(HalvedLoss().run(config))
    assert 1 <= len(plain) <= 4 and plain[0].test_loss is not None
    assert TinyImages().has_test_split({})
    # the task's loss is what is trained and reported (validation too)
    assert halved[0].val_loss == pytest.approx(plain[0].val_loss / 2, rel=0.05)


def test_options_are_checked_and_listed_with_lr_and_batch_size() -> None:
    task = TinyImages()
    assert set(task_options_help(task)) == {"lr", "batch_size"}
    task.check_options({"lr": 0.01, "batch_size": 8})
    with pytest.raises(TaskOptionsError, match=r"unknown option.*depth"):
        task.check_options({"depth": 2})
    with pytest.raises(TaskOptionsError, match="lr must be"):
        task.check_options({"lr": 0})


def test_the_seed_mlp_is_built_with_the_same_weights_either_way() -> None:
    torch.manual_seed(0)
    direct = build_mlp(64, 10, 0.3, 0.3)
    torch.manual_seed(0)
    contract = DigitsMLP().model(TrialParams(0.3, 0.3, 0.0))
    for a, b in zip(direct.parameters(), contract.parameters(), strict=True):
        assert torch.equal(a, b)
