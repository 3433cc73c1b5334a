"""Model tasks trained K at a time with torch.func.vmap: each member trains as it would alone."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from sweep.training import dropout
from sweep.training.batched import BatchedRun, SerialRun
from sweep.training.contract import ModelTask
from sweep.training.data import Splits, load_digits_split
from sweep.training.tasks import EpochResult, RunConfig, TrialParams
from sweep.training.vmapped import VmappedRun

TRAIN_SIZE = 80  # 3 minibatches of 32, the last one short
EPOCHS = 3


@functools.cache
def _images() -> Splits:
    flat = load_digits_split(TRAIN_SIZE)
    assert flat.X_test is not None
    as_images = [t.reshape(-1, 1, 8, 8) for t in (flat.X_train, flat.X_val, flat.X_test)]
    return Splits(as_images[0], flat.y_train, as_images[1], flat.y_val, as_images[2], flat.y_test)


class TinyCNN(ModelTask):
    """Conv → channel dropout → linear → dropout → linear, on the digits as 1x8x8 images."""

    name = "tiny-cnn"
    lr = 1e-2

    def data(self, options: Mapping[str, Any]) -> Splits:
        return _images()

    def build(self, dropout: float) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 4, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 32),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(32, 10),
        )


class TinyBatchNorm(TinyCNN):
    """Batch norm in training mode: each member keeps its own running statistics."""

    name = "tiny-batch-norm"

    def build(self, dropout: float) -> nn.Module:
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(32, 10),
        )


class SignFlip(nn.Module):
    """Branches on its input's values: vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.linear(x.flatten(1))
        return scores if scores.sum() > 0 else -scores


class Branching(TinyCNN):
    name = "tiny-branching"

    def build(self, dropout: float) -> nn.Module:
        return SignFlip()


def _config(p1: float, p2: float, wd: float, seed: int, penalty: str = "l2") -> RunConfig:
    return RunConfig(TrialParams(p1, p2, wd), epochs=EPOCHS, seed=seed, penalty=penalty)


def _train(run: BatchedRun, n_members: int) -> list[list[EpochResult]]:
    """Every member's curve, training until all have finished."""
    curves: list[list[EpochResult]] = [[] for _ in range(n_members)]
    while run.active_slots:
        for slot, result in enumerate(run.step_epoch()):
            if result is not None:
                curves[slot].append(result)
    return curves


def _assert_close(actual: list[EpochResult], expected: list[EpochResult]) -> None:
    """Same epochs and accuracies; losses equal up to fp32 rounding."""
    assert [r.epoch for r in actual] == [r.epoch for r in expected]
    assert [r.val_accuracy for r in actual] == pytest.approx([r.val_accuracy for r in expected])
    _assert_losses_close(actual, expected, ("train_loss", "val_loss", "test_loss"))
    assert [r.test_accuracy for r in actual] == pytest.approx([r.test_accuracy for r in expected])


def _assert_losses_close(
    actual: list[EpochResult], expected: list[EpochResult], fields: tuple[str, ...]
) -> None:
    for field in fields:
        got_values = [getattr(r, field) for r in actual]
        want_values = [getattr(r, field) for r in expected]
        # reported on the same epochs (test metrics only on epochs that improve val loss)
        assert [v is None for v in got_values] == [v is None for v in want_values], field
        got = torch.tensor([v for v in got_values if v is not None], dtype=torch.float64)
        want = torch.tensor([v for v in want_values if v is not None], dtype=torch.float64)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (field, got - want)


def _alone(task: ModelTask, config: RunConfig) -> list[EpochResult]:
    """The config trained by sweep's own loop (``train_epochs``), as a worker without --batch."""
    return list(task.run(config))


def test_a_single_member_trains_like_the_built_in_loop_dropout_included() -> None:
    task = TinyCNN()
    config = _config(0.3, 0.2, 1e-3, seed=7)
    run = task.start_batch([config], capacity=1)
    assert isinstance(run, VmappedRun)
    [curve] = _train(run, 1)
    assert len(curve) == EPOCHS
    _assert_close(curve, _alone(task, config))


def test_masks_drawn_by_bernoulli_where_it_is_not_a_uniform_draw_match_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # as on an Intel CPU, where torch's bernoulli_ is MKL's
    monkeypatch.setattr(dropout, "bernoulli_is_uniform_below", lambda device: False)
    task = TinyCNN()
    config = _config(0.4, 0.3, 1e-3, seed=8)
    curve, empty = _train(task.start_batch([config], capacity=2), 2)
    assert empty == []
    _assert_close(curve, _alone(task, config))


def test_members_that_evaluate_on_the_test_split_report_as_their_runs_alone() -> None:
    # re-evaluation runs of a sweep: test loss and accuracy on the epochs that improve val loss
    task = TinyCNN()
    configs = [
        dataclasses.replace(_config(0.3, 0.2, 1e-3, seed=5), evaluate_test=True),
        _config(0.2, 0.4, 1e-2, seed=6),  # a search trial beside it reports no test metrics
    ]
    tested, searched = _train(task.start_batch(configs, capacity=2), 2)
    assert any(r.test_loss is not None for r in tested)
    assert all(r.test_loss is None and r.test_accuracy is None for r in searched)
    _assert_close(tested, _alone(task, configs[0]))


@pytest.mark.parametrize("penalty", ["l2", "decoupled"])
def test_members_without_dropout_match_separate_runs(penalty: str) -> None:
    task = TinyCNN()
    configs = [_config(0.0, 0.0, wd, seed, penalty) for seed, wd in enumerate((1e-2, 1e-4, 0.0))]
    curves = _train(task.start_batch(configs, capacity=3), 3)
    for config, curve in zip(configs, curves, strict=True):
        _assert_close(curve, _alone(task, config))


@pytest.mark.parametrize("penalty", ["l2", "decoupled"])
def test_members_with_dropout_match_their_runs_alone(penalty: str) -> None:
    task = TinyCNN()
    configs = [
        _config(0.5, 0.2, 1e-2, seed=1, penalty=penalty),
        _config(0.2, 0.0, 1e-3, seed=2, penalty=penalty),
        _config(0.0, 0.0, 1e-4, seed=3, penalty=penalty),
        _config(0.3, 0.3, 0.0, seed=1, penalty=penalty),
    ]
    together = _train(task.start_batch(configs, capacity=4), 4)
    for config, curve in zip(configs, together, strict=True):
        [batch_of_one] = _train(task.start_batch([config], capacity=1), 1)
        _assert_close(curve, batch_of_one)
        _assert_close(curve, _alone(task, config))  # the same mask stream as nn.Dropout's
    # the same seed with other regularizers is another curve, not a copy of slot 0's
    assert together[3][-1].train_loss != pytest.approx(together[0][-1].train_loss, rel=1e-3)


def test_a_member_that_joins_later_trains_like_a_run_alone() -> None:
    task = TinyCNN()
    first, second = _config(0.2, 0.2, 1e-3, seed=11), _config(0.4, 0.1, 1e-2, seed=12)
    newcomer = _config(0.3, 0.0, 1e-4, seed=13, penalty="decoupled")
    run = task.start_batch([first, second], capacity=2)
    run.step_epoch()
    run.step_epoch()  # the others are two Adam steps ahead per minibatch
    run.remove(0)
    run.replace(0, newcomer)
    curve: list[EpochResult] = []
    while 0 in run.active_slots:
        result = run.step_epoch()[0]
        assert result is not None
        curve.append(result)
    _assert_close(curve, _alone(task, newcomer))


def test_pruning_a_member_frees_its_slot_and_leaves_the_others_alone() -> None:
    task = TinyCNN()
    configs = [_config(0.3, 0.3, 1e-3, seed=s) for s in (5, 6, 7)]
    full = _train(task.start_batch(configs, capacity=3), 3)

    run = task.start_batch(configs, capacity=3)
    first = run.step_epoch()
    run.remove(1)
    assert run.free_slots == [1] and run.active_slots == [0, 2]
    rest = _train(run, 3)
    assert rest[1] == []
    assert [first[0], *rest[0]] == full[0]
    assert [first[2], *rest[2]] == full[2]


def test_batch_norm_members_keep_their_own_statistics() -> None:
    task = TinyBatchNorm()
    configs = [_config(0.2, 0.2, 1e-3, seed=s) for s in (1, 2)]
    run = task.start_batch(configs, capacity=2)
    assert isinstance(run, VmappedRun)
    for config, curve in zip(configs, _train(run, 2), strict=True):
        _assert_close(curve, _alone(task, config))


def test_a_model_vmap_cannot_batch_trains_one_at_a_time_and_says_why_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = Branching()
    configs = [_config(0.0, 0.0, 1e-3, seed=s) for s in (1, 2)]
    with caplog.at_level(logging.WARNING, logger="sweep.training"):
        runs = [task.start_batch([config], capacity=4) for config in configs]
    reasons = [r.getMessage() for r in caplog.records if "one trial at a time" in r.getMessage()]
    assert len(reasons) == 1 and "data-dependent control flow" in reasons[0], reasons
    for run, config in zip(runs, configs, strict=True):
        assert isinstance(run, SerialRun) and run.capacity == 1
        [curve] = _train(run, 1)
        assert run.free_slots == [0]  # the next trial can take the slot
        assert curve == _alone(task, config)
