"""deploy/slurm/workers.sbatch: valid bash, and its worker exits 0 when there is nothing to do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "slurm" / "workers.sbatch"


def directives() -> dict[str, str]:
    """The script's ``#SBATCH --name=value`` lines."""
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", SCRIPT.read_text(), flags=re.M))


def run_as_array_task(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The script as SLURM runs one task of the array, with ``sweep`` being this checkout's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "sweep"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sweep "$@"\n')
    shim.chmod(0o755)
    base = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "SLURM_JOB_ID": "4243",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_ARRAY_TASK_COUNT": "8",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_script_is_valid_bash_asking_one_gpu_per_array_task() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    options = directives()
    assert options["gres"] == "gpu:1"
    assert re.fullmatch(r"\d+-\d+", options["array"])
    assert options["signal"].startswith("B:TERM@")  # the batch shell is the exec'd worker
    assert "exec sweep worker --exit-when-idle" in SCRIPT.read_text()


def test_an_array_task_with_nothing_to_do_exits_0(tmp_path: Path, sqlite_url: str) -> None:
    result = run_as_array_task(tmp_path, {"SWEEP_DATABASE_URL": sqlite_url, "SWEEP_DEVICE": "cpu"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "array job 4242 task 3" in result.stdout
    assert "no sweep has work; exiting" in result.stdout + result.stderr


def test_an_array_task_without_a_database_url_says_what_to_set(tmp_path: Path) -> None:
    result = run_as_array_task(tmp_path, {})
    assert result.returncode != 0
    assert "export SWEEP_DATABASE_URL" in result.stderr
