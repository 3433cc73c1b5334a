"""Datasets as tensors: scikit-learn's bundled digits on a fixed split, and the user's .npz."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from sweep.training.tasks import TaskOptionsError

DIGITS_VAL_SIZE = 600
DIGITS_TRAIN_SIZE_MIN = 20
DIGITS_TRAIN_SIZE_MAX = 1000  # of the 1197 rows left after validation; the rest is the test set
MAX_CLASSES = 10_000  # the output layer is 128 x classes; a stray huge label would blow it up

NPZ_REQUIRED = ("X_train", "y_train", "X_val", "y_val")
NPZ_OPTIONAL = ("X_test", "y_test")


@dataclass(frozen=True)
class Splits:
    """Features (float32, rows x features) and class labels (int64) of each split, on the CPU."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        """Columns of every X."""
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        """One more than the largest label in any split."""
        labels = [self.y_train, self.y_val] + ([self.y_test] if self.y_test is not None else [])
        return 1 + max(int(y.max()) for y in labels if y.numel())


def load_digits_split(train_size: int, seed: int = 0) -> Splits:
    """The 8x8 digits scaled to [0, 1]: ``train_size`` training rows, 600 validation, rest test.

    The split is stratified and fixed by ``seed`` (not the trial's seed), so every
    trial of a sweep sees the same rows. Valid sizes: 20…1000.
    """
    # Imported here: scikit-learn takes a second to import and only this task needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities are 0…16
    X_rest, X_val, y_rest, y_val = train_test_split(
        X, y, test_size=DIGITS_VAL_SIZE, stratify=y, random_state=seed
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X_rest, y_rest, train_size=train_size, stratify=y_rest, random_state=seed
    )
    return _to_splits(
        {
            "X_train": X_train,
            "y_train": y_train,
            "X_val": X_val,
            "y_val": y_val,
            "X_test": X_test,
            "y_test": y_test,
        }
    )


def check_npz(path: str | Path) -> None:
    """Raise TaskOptionsError naming the problem if ``path`` is not a usable .npz dataset."""
    _read_npz(path)


def load_npz(path: str | Path) -> Splits:
    """The user's dataset: keys X_train, y_train, X_val, y_val, and optionally X_test, y_test.

    Raises TaskOptionsError for a missing file or key, rows that do not match,
    feature counts that differ between splits, NaN/inf, or labels that are not
    non-negative integers.
    """
    return _to_splits(_read_npz(path))


def _to_splits(arrays: dict[str, npt.NDArray[np.generic]]) -> Splits:
    tensors = {
        key: torch.as_tensor(
            np.asarray(value, dtype=np.float32 if key.startswith("X") else np.int64)
        )
        for key, value in arrays.items()
    }
    return Splits(**tensors)


def _read_npz(path: str | Path) -> dict[str, npt.NDArray[np.generic]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise TaskOptionsError(
            f"npz file not found: {str(file)!r} (a relative path is read from the "
            "worker's working directory; give an absolute path the worker can see)"
        )
    arrays = _read_arrays(file)
    splits = ["train", "val"] + (["test"] if "X_test" in arrays else [])
    n_features = arrays["X_train"].shape[1] if arrays["X_train"].ndim == 2 else None
    for split in splits:
        X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if X.ndim != 2:
            raise TaskOptionsError(f"X_{split} must be 2-D (rows x features); got shape {X.shape}")
        if y.ndim != 1:
            raise TaskOptionsError(f"y_{split} must be 1-D (a label per row); got shape {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise TaskOptionsError(
                f"row count mismatch: X_{split} has {X.shape[0]} rows, y_{split} has {y.shape[0]}"
            )
        if X.shape[0] == 0:
            raise TaskOptionsError(f"X_{split} has no rows")
        if X.shape[1] != n_features:
            raise TaskOptionsError(
                f"feature count mismatch: X_train has {n_features} features, "
                f"X_{split} has {X.shape[1]}"
            )
        if X.dtype.kind not in "biuf":
            raise TaskOptionsError(f"X_{split} must be numeric; got dtype {X.dtype}")
        bad = int(X.size - np.count_nonzero(np.isfinite(X)))
        if bad:
            raise TaskOptionsError(f"X_{split} has {bad} non-finite value(s) (NaN or ±inf)")
        _check_labels(f"y_{split}", y)
    return arrays


def _read_arrays(file: Path) -> dict[str, npt.NDArray[np.generic]]:
    try:
        archive = np.load(file, allow_pickle=False)  # never unpickle a user's file
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TaskOptionsError(f"{str(file)!r} is not a readable .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TaskOptionsError(
            f"{str(file)!r} holds a single array; save the splits with "
            "numpy.savez(path, X_train=…, y_train=…, X_val=…, y_val=…)"
        )
    with archive:
        keys = set(archive.files)
        missing = [key for key in NPZ_REQUIRED if key not in keys]
        if missing:
            raise TaskOptionsError(
                f"npz file is missing key(s) {', '.join(missing)}; it needs "
                f"{', '.join(NPZ_REQUIRED)} (and optionally {', '.join(NPZ_OPTIONAL)}); "
                f"found: {', '.join(sorted(keys)) or 'none'}"
            )
        if ("X_test" in keys) != ("y_test" in keys):
            raise TaskOptionsError("npz file has only one of X_test, y_test; give both or neither")
        names = [*NPZ_REQUIRED, *(NPZ_OPTIONAL if "X_test" in keys else ())]
        try:
            return {name: archive[name] for name in names}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:  # object arrays need pickle
            raise TaskOptionsError(f"npz file has an array numpy cannot read: {exc}") from None


def _check_labels(name: str, y: npt.NDArray[np.generic]) -> None:
    rule = "labels must be class indices 0, 1, 2, …"
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise TaskOptionsError(f"{name} has NaN or ±inf labels; {rule}")
        values = y.astype(np.float64)
        fractional = values[values != np.round(values)]
        if fractional.size:
            raise TaskOptionsError(f"{name} has non-integer labels (e.g. {fractional[0]}); {rule}")
    elif y.dtype.kind not in "biu":
        raise TaskOptionsError(f"{name} must hold integer labels; got dtype {y.dtype}; {rule}")
    if y.size and y.min() < 0:
        raise TaskOptionsError(f"{name} has negative labels (e.g. {y.min()}); {rule}")
    if y.size and y.max() >= MAX_CLASSES:
        raise TaskOptionsError(f"{name} has label {y.max()}; at most {MAX_CLASSES} classes")
