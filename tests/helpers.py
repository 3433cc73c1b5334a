"""Helpers that test modules share: sweeps to start from, .npz files, the chart's PNG.

Fixtures live in the conftest.py files; test modules import from here, never from each other.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.service import sweeps
from sweep.store.engine import transaction
from sweep.store.optuna_storage import storage_for
from sweep.worker.loop import Worker

# Racing (on by default) off: tests of other things keep to the fixed re-evaluation.
SYNTHETIC = {"task": "synthetic", "epochs": 4, "race": False}


def create(client: TestClient, name: str, **fields: object) -> dict[str, object]:
    """Create a sweep of the synthetic task through the API; its JSON."""
    response = client.post("/v1/sweeps", json={"name": name, **SYNTHETIC, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def run_worker(settings: Settings) -> None:
    """Run a worker in this process until no sweep has work left."""
    assert Worker(settings, device="cpu", exit_when_idle=True).run() == 0


def make_sweep(
    settings: Settings,
    factory: sessionmaker[Session],
    name: str,
    *,
    created_by: int | None = None,
    **fields: object,
) -> int:
    """Create a sweep in the store (synthetic task, 3 epochs, no racing, unless ``fields``
    say); its id."""
    spec = sweeps.SweepSpec.model_validate(
        {"name": name, "task": "synthetic", "epochs": 3, "race": False, **fields}
    )
    with transaction(factory) as session:
        return sweeps.create_sweep(session, storage_for(settings), spec, created_by=created_by).id


Arrays = dict[str, npt.NDArray[np.generic]]


def good_arrays() -> Arrays:
    """The arrays of a valid npz-mlp data file: 40 training and 20 validation rows."""
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.normal(size=(40, 5)).astype(np.float32),
        "y_train": rng.integers(0, 3, size=40),
        "X_val": rng.normal(size=(20, 5)),
        "y_val": rng.integers(0, 3, size=20),
    }


def save_npz(tmp_path: Path, arrays: Arrays) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _spoiled(key: str, index: tuple[int, ...], value: float) -> npt.NDArray[np.generic]:
    array = good_arrays()[key].copy()
    array[index] = value
    return array


# case: (keys to replace, or to drop when None; what the message must say)
BAD_NPZ_FILES: dict[str, tuple[dict[str, object], str]] = {
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


def save_bad_npz(tmp_path: Path, case: str) -> Path:
    """The good arrays with the changes of ``BAD_NPZ_FILES[case]``, saved."""
    changes, _message = BAD_NPZ_FILES[case]
    arrays = good_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = np.asarray(value)
    return save_npz(tmp_path, arrays)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (its first chunk is IHDR)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
