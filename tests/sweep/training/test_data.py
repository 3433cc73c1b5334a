"""Datasets: the fixed digits split, and validation of the user's .npz."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sweep.training.builtin import NpzMLP
from sweep.training.data import check_npz, load_digits_split, load_npz
from sweep.training.tasks import RunConfig, TaskOptionsError, TrialParams
from tests.helpers import BAD_NPZ_FILES, good_arrays, save_bad_npz, save_npz


def test_digits_split_sizes_scale_and_stratification() -> None:
    data = load_digits_split(300)

    assert data.X_test is not None and data.y_test is not None
    assert (len(data.X_train), len(data.X_val), len(data.X_test)) == (300, 600, 897)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert (data.n_features, data.n_classes) == (64, 10)
    assert float(data.X_train.min()) >= 0.0 and float(data.X_train.max()) <= 1.0
    assert set(torch.bincount(data.y_train).tolist()) <= {29, 30, 31}


def test_digits_split_is_fixed_and_validation_does_not_depend_on_train_size() -> None:
    small, again, large = load_digits_split(300), load_digits_split(300), load_digits_split(500)
    assert torch.equal(small.X_train, again.X_train)
    assert torch.equal(small.X_val, large.X_val)


@pytest.mark.parametrize("case", BAD_NPZ_FILES, ids=list(BAD_NPZ_FILES))
def test_bad_npz_is_refused_with_a_message_naming_the_problem(tmp_path: Path, case: str) -> None:
    _changes, message = BAD_NPZ_FILES[case]
    path = save_bad_npz(tmp_path, case)

    with pytest.raises(TaskOptionsError, match=message):
        NpzMLP().check_options({"path": str(path)})
    with pytest.raises(TaskOptionsError, match=message):
        load_npz(path)


def test_missing_npz_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskOptionsError, match=r"npz file not found: .*nowhere\.npz"):
        check_npz(tmp_path / "nowhere.npz")


def test_a_file_that_is_not_an_npz_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "data.npz"
    text.write_text("X_train,y_train\n1,2\n")
    with pytest.raises(TaskOptionsError, match=r"not a readable \.npz archive"):
        check_npz(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(TaskOptionsError, match="holds a single array"):
        check_npz(single)


def test_whole_number_float_labels_are_accepted(tmp_path: Path) -> None:
    arrays = good_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    data = load_npz(save_npz(tmp_path, arrays))
    assert data.y_train.dtype == torch.int64


def test_good_npz_trains_for_two_epochs(tmp_path: Path) -> None:
    arrays = good_arrays()
    arrays["X_test"], arrays["y_test"] = np.zeros((7, 5)), np.arange(7) % 3
    task = NpzMLP()
    options = {"path": str(save_npz(tmp_path, arrays)), "batch_size": 16}
    task.check_options(options)

    config = RunConfig(TrialParams(0.3, 0.3, 1e-4), epochs=2, seed=0, options=options)
    results = list(task.run(config))

    assert [r.epoch for r in results] == [0, 1]
    for r in results:
        assert math.isfinite(r.train_loss) and math.isfinite(r.val_loss)
        assert 0.0 <= r.val_accuracy <= 1.0
