"""Batched trials: K members trained as one stacked model behave like K separate runs."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from sweep.training.data import Splits, load_digits_split
from sweep.training.stacked_mlp import StackedMLPRun
from sweep.training.tasks import EpochResult, RunConfig, TrialParams
from sweep.training.train import train_epochs

LR, BATCH_SIZE = 1e-2, 32
TRAIN_SIZE = 120  # 4 minibatches, the last one short
EPOCHS = 6


@functools.cache
def _data() -> Splits:
    return load_digits_split(TRAIN_SIZE)


def _config(
    p1: float,
    p2: float,
    wd: float,
    seed: int,
    penalty: str = "l2",
    epochs: int = EPOCHS,
    patience: int | None = None,
) -> RunConfig:
    params = TrialParams(p1, p2, wd)
    return RunConfig(params, epochs=epochs, seed=seed, penalty=penalty, patience=patience)


def _batched(configs: list[RunConfig]) -> list[list[EpochResult]]:
    """Every member's curve, training until all have finished."""
    run = StackedMLPRun(_data(), configs, lr=LR, batch_size=BATCH_SIZE)
    curves: list[list[EpochResult]] = [[] for _ in configs]
    while run.active_slots:
        for slot, result in enumerate(run.step_epoch()):
            if result is not None:
                curves[slot].append(result)
    return curves


def _assert_close(actual: list[EpochResult], expected: list[EpochResult]) -> None:
    """Same epochs and accuracies; losses equal up to fp32 rounding."""
    assert [r.epoch for r in actual] == [r.epoch for r in expected]
    assert [r.val_accuracy for r in actual] == [r.val_accuracy for r in expected]
    for field in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
        got_values = [getattr(r, field) for r in actual]
        want_values = [getattr(r, field) for r in expected]
        # reported on the same epochs (test metrics only on epochs that improve val loss)
        assert [v is None for v in got_values] == [v is None for v in want_values], field
        got = torch.tensor([v for v in got_values if v is not None], dtype=torch.float64)
        want = torch.tensor([v for v in want_values if v is not None], dtype=torch.float64)
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (field, got - want)


@pytest.mark.parametrize("penalty", ["l2", "decoupled"])
def test_members_without_dropout_match_separate_train_epochs_runs(penalty: str) -> None:
    configs = [
        _config(0.0, 0.0, 1e-2, seed=1, penalty=penalty),
        _config(0.0, 0.0, 1e-4, seed=2, penalty=penalty),
        _config(0.0, 0.0, 0.0, seed=3, penalty=penalty),
    ]
    curves = _batched(configs)
    for config, curve in zip(configs, curves, strict=True):
        alone = list(train_epochs(_data(), config, lr=LR, batch_size=BATCH_SIZE))
        assert len(curve) == EPOCHS
        _assert_close(curve, alone)


def test_members_that_evaluate_on_the_test_split_report_as_train_epochs_does() -> None:
    # re-evaluation runs of a sweep: test loss and accuracy on the epochs that improve val loss
    tested = dataclasses.replace(_config(0.0, 0.0, 1e-3, seed=4), evaluate_test=True)
    searched = _config(0.0, 0.0, 1e-2, seed=5)
    with_test, without = _batched([tested, searched])
    assert any(r.test_loss is not None for r in with_test)
    assert all(r.test_loss is None and r.test_accuracy is None for r in without)
    _assert_close(with_test, list(train_epochs(_data(), tested, lr=LR, batch_size=BATCH_SIZE)))


@pytest.mark.parametrize("penalty", ["l2", "decoupled"])
def test_members_with_dropout_match_their_runs_alone(penalty: str) -> None:
    configs = [
        _config(0.5, 0.2, 1e-2, seed=1, penalty=penalty),
        _config(0.2, 0.0, 1e-3, seed=2, penalty=penalty),
        _config(0.0, 0.0, 1e-4, seed=3, penalty=penalty),
        _config(0.3, 0.3, 0.0, seed=1, penalty=penalty),
    ]
    together = _batched(configs)
    for config, curve in zip(configs, together, strict=True):
        [alone] = _batched([config])
        _assert_close(curve, alone)
    # the same seed with other regularizers is another curve, not a copy of slot 0's
    assert together[3][-1].train_loss != pytest.approx(together[0][-1].train_loss, rel=1e-3)


def test_a_pruned_member_does_not_change_the_others() -> None:
    configs = [_config(0.3, 0.3, 1e-3, seed=s) for s in (5, 6, 7)]
    full = _batched(configs)

    run = StackedMLPRun(_data(), configs, lr=LR, batch_size=BATCH_SIZE)
    pruned: list[list[EpochResult]] = [[], [], []]
    while run.active_slots:
        for slot, result in enumerate(run.step_epoch()):
            if result is not None:
                pruned[slot].append(result)
        if len(pruned[1]) == 2 and 1 in run.active_slots:
            run.remove(1)

    assert len(pruned[1]) == 2
    assert pruned[0] == full[0]
    assert pruned[2] == full[2]


def test_a_replacement_member_trains_like_a_fresh_run() -> None:
    first, second = _config(0.2, 0.2, 1e-3, seed=11), _config(0.4, 0.1, 1e-2, seed=12)
    newcomer = _config(0.3, 0.0, 1e-4, seed=13, penalty="decoupled")
    run = StackedMLPRun(_data(), [first, second], lr=LR, batch_size=BATCH_SIZE)
    curve: list[EpochResult] = []
    for _ in range(3):
        run.step_epoch()
    run.remove(0)
    assert run.free_slots == [0]
    run.replace(0, newcomer)
    while 0 in run.active_slots:
        result = run.step_epoch()[0]
        assert result is not None
        curve.append(result)

    [fresh] = _batched([newcomer])
    assert len(curve) == EPOCHS
    _assert_close(curve, fresh)


def test_a_slot_in_use_cannot_be_replaced() -> None:
    run = StackedMLPRun(_data(), [_config(0.2, 0.2, 0.0, seed=1)], lr=LR, batch_size=BATCH_SIZE)
    with pytest.raises(ValueError, match="still training"):
        run.replace(0, _config(0.1, 0.1, 0.0, seed=2))


def test_members_keep_their_own_epoch_budget_and_patience() -> None:
    configs = [
        _config(0.0, 0.0, 0.0, seed=1, epochs=2),
        _config(0.0, 0.0, 0.0, seed=2, epochs=5),
        _config(0.0, 0.0, 0.0, seed=3, epochs=40, patience=1),
    ]
    curves = _batched(configs)
    for config, curve in zip(configs, curves, strict=True):
        alone = list(train_epochs(_data(), config, lr=LR, batch_size=BATCH_SIZE))
        _assert_close(curve, alone)
    assert [len(c) for c in curves[:2]] == [2, 5]
    assert len(curves[2]) < 40  # stopped by patience, as train_epochs stops


def test_weight_decay_and_dropout_act_per_member() -> None:
    plain = _config(0.0, 0.0, 0.0, seed=4, epochs=15)
    decayed = _config(0.0, 0.0, 1e-2, seed=4, epochs=15)
    dropped = _config(0.5, 0.5, 0.0, seed=4, epochs=15)
    run = StackedMLPRun(_data(), [plain, decayed, dropped], lr=LR, batch_size=BATCH_SIZE)
    last: list[EpochResult | None] = []
    while run.active_slots:
        last = run.step_epoch()

    def weight_norm(slot: int) -> float:
        weights = [m.weight.detach() for m in run.model(slot) if isinstance(m, torch.nn.Linear)]
        return float(torch.cat([w.flatten() for w in weights]).norm())

    assert weight_norm(1) < 0.8 * weight_norm(0)
    plain_result, dropped_result = last[0], last[2]
    assert plain_result is not None and dropped_result is not None
    # dropout makes the training loss (measured with dropout on) much higher
    assert dropped_result.train_loss > 3 * plain_result.train_loss


def test_a_finished_members_model_reproduces_its_last_validation_loss() -> None:
    finished = _config(0.3, 0.2, 1e-2, seed=9, penalty="decoupled", epochs=3)
    still_training = _config(0.0, 0.0, 1e-3, seed=1, penalty="decoupled", epochs=5)
    run = StackedMLPRun(_data(), [finished, still_training], lr=LR, batch_size=BATCH_SIZE)
    last: EpochResult | None = None
    while run.active_slots:
        last = run.step_epoch()[0] or last
    assert last is not None and last.epoch == 2

    model = run.model(0).eval()  # two epochs of its neighbour later
    with torch.no_grad():
        logits = model(_data().X_val)
    val_loss = float(torch.nn.functional.cross_entropy(logits, _data().y_val))
    accuracy = float((logits.argmax(dim=1) == _data().y_val).float().mean())
    assert last.val_loss == pytest.approx(val_loss, rel=1e-5)
    assert last.val_accuracy == pytest.approx(accuracy)


def test_constructing_a_run_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run = StackedMLPRun(_data(), [_config(0.3, 0.3, 0.0, seed=1)], lr=LR, batch_size=BATCH_SIZE)
    run.step_epoch()
    assert torch.equal(torch.rand(3), expected)
