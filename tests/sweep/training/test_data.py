"""Datasets: the fixed digits split, and validation of the user's .npz."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from sweep.training.builtin import NpzMLP
from sweep.training.data import check_npz, load_digits_split, load_npz
from sweep.training.tasks import RunConfig, TaskOptionsError, TrialParams

Arrays = dict[str, npt.NDArray[np.generic]]


def _good_arrays() -> Arrays:
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.normal(size=(40, 5)).astype(np.float32),
        "y_train": rng.integers(0, 3, size=40),
        "X_val": rng.normal(size=(20, 5)),
        "y_val": rng.integers(0, 3, size=20),
    }


def _save(tmp_path: Path, arrays: Arrays) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


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


def _spoiled(key: str, index: tuple[int, ...], value: float) -> npt.NDArray[np.generic]:
    array = _good_arrays()[key].copy()
    array[index] = value
    return array


# case: (keys to replace, or to drop when None; what the message must say)
BAD_FILES: dict[str, tuple[dict[str, object], str]] = {
    "missing key": ({"y_val": None}, r"missing key\(s\) y_val"),
    "row mismatch": (
        {"y_train": np.zeros(39, dtype=np.int64)},
        "row count mismatch: X_train has 40 rows, y_train has 39",
    ),
    "feature mismatch": (
        {"X_val": np.zeros((20, 4))},
        "feature count mismatch: X_train has 5 features, X_val has 4",
    ),
    "nan": ({"X_val": _spoiled("X_val", (3, 2), math.nan)}, r"X_val has 1 non-finite value\(s\)"),
    "negative label": ({"y_train": _spoiled("y_train", (0,), -1)}, "y_train has negative labels"),
    "float label": ({"y_val": np.full(20, 0.5)}, "y_val has non-integer labels"),
    "string label": ({"y_val": np.array(["a"] * 20)}, "y_val must hold integer labels"),
    "1-D features": ({"X_train": np.zeros(40)}, "X_train must be 2-D"),
    "test without labels": ({"X_test": np.zeros((3, 5))}, "only one of X_test, y_test"),
    "object array": ({"X_val": np.array([[1, "a"]] * 20, dtype=object)}, "numpy cannot read"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_npz_is_refused_with_a_message_naming_the_problem(tmp_path: Path, case: str) -> None:
    changes, message = BAD_FILES[case]
    arrays = _good_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = np.asarray(value)
    path = _save(tmp_path, arrays)

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
    arrays = _good_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    data = load_npz(_save(tmp_path, arrays))
    assert data.y_train.dtype == torch.int64


def test_good_npz_trains_for_two_epochs(tmp_path: Path) -> None:
    arrays = _good_arrays()
    arrays["X_test"], arrays["y_test"] = np.zeros((7, 5)), np.arange(7) % 3
    task = NpzMLP()
    options = {"path": str(_save(tmp_path, arrays)), "batch_size": 16}
    task.check_options(options)

    config = RunConfig(TrialParams(0.3, 0.3, 1e-4), epochs=2, seed=0, options=options)
    results = list(task.run(config))

    assert [r.epoch for r in results] == [0, 1]
    for r in results:
        assert math.isfinite(r.train_loss) and math.isfinite(r.val_loss)
        assert 0.0 <= r.val_accuracy <= 1.0
