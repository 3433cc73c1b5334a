"""The training loop: optimizer arithmetic, reproducibility, early stopping, overfitting."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

from sweep.training.builtin import DigitsMLP
from sweep.training.data import load_digits_split
from sweep.training.tasks import EpochResult, RunConfig, TrialParams
from sweep.training.train import make_optimizer, pick_device, train_epochs

LR, WEIGHT_DECAY = 0.01, 0.5
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
OVERFIT_EPOCHS = 120  # p=0, λ=0 reaches its best validation loss near epoch 55 on the default task


def _loss(model: nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    return nn.functional.cross_entropy(model(x), y)


def _adam_by_hand(model: nn.Module, steps: int, decoupled: bool) -> list[torch.Tensor]:
    """The Adam formulas written out, on copies of the model's weights."""
    weights = [p.detach().clone() for p in model.parameters()]
    m = [torch.zeros_like(w) for w in weights]
    v = [torch.zeros_like(w) for w in weights]
    for t in range(1, steps + 1):
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights, strict=True):
                p.copy_(w)
        model.zero_grad()
        _loss(model).backward()
        for i, (p, w) in enumerate(zip(model.parameters(), weights, strict=True)):
            assert p.grad is not None
            g = p.grad.clone()
            if decoupled:
                w = w - LR * WEIGHT_DECAY * w
            else:
                g = g + WEIGHT_DECAY * w
            m[i] = BETA1 * m[i] + (1 - BETA1) * g
            v[i] = BETA2 * v[i] + (1 - BETA2) * g * g
            m_hat = m[i] / (1 - BETA1**t)
            v_hat = v[i] / (1 - BETA2**t)
            weights[i] = w - LR * m_hat / (v_hat.sqrt() + EPS)
    return weights


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("penalty", ["l2", "decoupled"])
def test_optimizer_step_matches_the_adam_formulas(penalty: str, steps: int) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    start = [p.detach().clone() for p in model.parameters()]
    expected = _adam_by_hand(model, steps, decoupled=penalty == "decoupled")

    with torch.no_grad():
        for p, w in zip(model.parameters(), start, strict=True):
            p.copy_(w)
    optimizer = make_optimizer(model, penalty, LR, WEIGHT_DECAY)
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model).backward()
        optimizer.step()

    for got, want in zip(model.parameters(), expected, strict=True):
        assert torch.allclose(got.detach(), want, rtol=1e-5, atol=1e-7)


def test_coupled_and_decoupled_decay_differ() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    coupled = _adam_by_hand(model, 3, decoupled=False)
    decoupled = _adam_by_hand(model, 3, decoupled=True)
    assert not torch.allclose(coupled[0], decoupled[0])


def test_unknown_penalty_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown penalty 'l1'"):
        make_optimizer(nn.Linear(2, 2), "l1", LR, WEIGHT_DECAY)


def _run(
    p: float,
    weight_decay: float,
    seed: int,
    epochs: int,
    penalty: str = "l2",
    patience: int | None = None,
) -> list[EpochResult]:
    params = TrialParams(p, p, weight_decay)
    config = RunConfig(params, epochs=epochs, seed=seed, penalty=penalty, patience=patience)
    return list(DigitsMLP().run(config))


def test_same_config_gives_bit_identical_curves_on_cpu() -> None:
    first = _run(0.3, 1e-3, seed=7, epochs=5)
    second = _run(0.3, 1e-3, seed=7, epochs=5)
    other_seed = _run(0.3, 1e-3, seed=8, epochs=5)

    assert first == second
    assert first != other_seed


def test_decoupled_penalty_trains_too() -> None:
    results = _run(0.3, 1e-2, seed=0, epochs=3, penalty="decoupled")
    assert [r.epoch for r in results] == [0, 1, 2]
    assert results[-1].val_loss < results[0].val_loss


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    patience = 5
    results = _run(0.0, 0.0, seed=0, epochs=300, patience=patience)

    val = [r.val_loss for r in results]
    assert len(results) < 300
    # the best epoch is followed by exactly `patience` epochs that did not beat it
    assert val.index(min(val)) == len(val) - 1 - patience


def test_early_stopping_counts_epochs_that_only_tie() -> None:
    data = load_digits_split(300)
    config = RunConfig(TrialParams(0.0, 0.0, 0.0), epochs=50, seed=0, patience=3)
    # lr=0 leaves the weights alone, so every epoch's validation loss ties the first
    results = list(train_epochs(data, config, lr=0.0, batch_size=32))
    assert len(results) == 1 + 3
    assert len({r.val_loss for r in results}) == 1


@pytest.fixture(scope="module")
def default_task_runs() -> dict[str, list[list[EpochResult]]]:
    seeds = range(3)
    return {
        "plain": [_run(0.0, 0.0, seed, OVERFIT_EPOCHS) for seed in seeds],
        "regularized": [_run(0.35, 1e-3, seed, OVERFIT_EPOCHS) for seed in seeds],
    }


def test_default_task_overfits_without_regularization(
    default_task_runs: dict[str, list[list[EpochResult]]],
) -> None:
    for results in default_task_runs["plain"]:
        val = [r.val_loss for r in results]
        best = val.index(min(val))
        assert best < OVERFIT_EPOCHS - 20
        assert val[-1] > 1.05 * val[best]  # validation loss climbs back up…
        assert (
            results[-1].train_loss < 0.5 * results[best].train_loss
        )  # …while training still falls


def test_regularization_beats_no_regularization_on_the_default_task(
    default_task_runs: dict[str, list[list[EpochResult]]],
) -> None:
    def mean_best(runs: list[list[EpochResult]]) -> float:
        return statistics.mean(min(r.val_loss for r in results) for results in runs)

    def mean_last(runs: list[list[EpochResult]]) -> float:
        return statistics.mean(results[-1].val_loss for results in runs)

    plain, regularized = default_task_runs["plain"], default_task_runs["regularized"]
    assert mean_best(regularized) < mean_best(plain) - 0.015
    assert mean_last(regularized) < mean_last(plain) - 0.015


def test_pick_device_auto_and_cpu() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_pick_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda:0")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def test_pick_device_refuses_a_gpu_that_is_not_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"'cuda:2' does not exist: 2 CUDA device\(s\)"):
        pick_device("cuda:2")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
