"""The built-in tasks' options: each mistake is named with its rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sweep.training.builtin import DigitsMLP, NpzMLP
from sweep.training.tasks import RunConfig, TaskOptionsError, TrialParams, get_task


def test_builtin_tasks_are_registered_by_name() -> None:
    assert isinstance(get_task("digits-mlp"), DigitsMLP)
    assert isinstance(get_task("npz-mlp"), NpzMLP)


def test_digits_defaults_and_valid_options_pass() -> None:
    DigitsMLP().check_options({})
    DigitsMLP().check_options({"train_size": 500, "lr": 3e-4, "batch_size": 64})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 5}, "unknown option.*epochs.*for task 'digits-mlp'"),
        ({"train_size": 5}, "train_size must be an integer from 20 to 1000; got 5"),
        ({"train_size": 300.0}, "train_size must be an integer"),
        ({"train_size": True}, "train_size must be an integer"),
        ({"lr": 0}, "lr must be a number greater than 0"),
        ({"lr": float("nan")}, "lr must be a number"),
        ({"lr": "0.01"}, "lr must be a number"),
        ({"batch_size": 0}, "batch_size must be an integer from 1"),
        ({"batch_size": False}, "batch_size must be an integer"),
    ],
)
def test_digits_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskOptionsError, match=message):
        DigitsMLP().check_options(options)


def test_run_refuses_bad_options_too() -> None:
    config = RunConfig(TrialParams(0.0, 0.0, 0.0), epochs=1, seed=0, options={"lr": -1})
    with pytest.raises(TaskOptionsError, match="lr must be"):
        list(DigitsMLP().run(config))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "option path is required"),
        ({"path": ""}, "option path is required"),
        ({"path": "x.npz", "train_size": 10}, "unknown option.*train_size.*for task 'npz-mlp'"),
        ({"path": "/nonexistent/x.npz"}, "npz file not found"),
    ],
)
def test_npz_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskOptionsError, match=message):
        NpzMLP().check_options(options)


def test_training_package_imports_torch_alone() -> None:
    # a fresh interpreter: this test process already holds the service's modules
    code = (
        "import sys, sweep.training.builtin, sweep.training.train\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(','.join(sorted(loaded & {'sqlalchemy', 'optuna', 'fastapi'})))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
