"""Wall time of the default sweep: sweep workers against a plain Optuna script, one run.

Same task (digits-mlp), budget, epochs, sampler (TPE) and pruner (median,
warm-up half the epochs) on each side. Plain Optuna: `study.optimize` in one
process, with its study in memory and, as a second line, in an SQLite file
(what the service needs for a dashboard, many workers and restarts). sweep:
`sweep worker --exit-when-idle` processes on a fresh SQLite database, timed
from their start until they exit (start-up included on both sides). Ratios are
plain Optuna's in-memory wall time over each configuration's. Last, the whole
sweep as a user runs it, its evaluation runs included (baseline, re-evaluation
of the top 3, the race), with `--batch 8` against one trial at a time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import create_sweep, fresh_database, start_worker

PLAIN_OPTUNA = """
import sys, optuna, torch
from sweep.training.builtin import DigitsMLP
from sweep.training.tasks import RunConfig, TrialParams
optuna.logging.set_verbosity(optuna.logging.ERROR)
torch.set_num_threads(1)
n_trials, epochs, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
storage = sys.argv[4] or None  # "" keeps the study in memory
task = DigitsMLP()

def objective(trial):
    p = trial.suggest_float("dropout", 0.2, 0.5)
    wd = trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True)
    config = RunConfig(TrialParams(p, p, wd), epochs=epochs, seed=trial.number, device=device)
    best = float("inf")
    for r in task.run(config):
        best = min(best, r.val_loss)
        trial.report(r.val_loss, r.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return best

study = optuna.create_study(
    storage=storage,
    sampler=optuna.samplers.TPESampler(seed=0, multivariate=True),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=epochs // 2),
)
study.optimize(objective, n_trials=n_trials)
print(study.best_value)
"""


def plain_optuna(trials: int, epochs: int, device: str, storage: str = "") -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", PLAIN_OPTUNA, str(trials), str(epochs), device, storage],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def sweep_workers(
    trials: int, epochs: int, device: str, workers: int, *extra: str, evaluation: bool = False
) -> float:
    with fresh_database("sqlite") as url, tempfile.TemporaryDirectory() as logs:
        # Search trials only, as plain Optuna runs, unless the whole sweep is asked for.
        search_only = {} if evaluation else {"baseline": False, "reevaluate_top": 0}
        create_sweep(url, "e2e", task="digits-mlp", n_trials=trials, epochs=epochs, **search_only)
        start = time.perf_counter()
        procs = [
            start_worker(url, Path(logs) / f"w{i}.log", "--exit-when-idle", *extra, device=device)
            for i in range(workers)
        ]
        for proc in procs:
            proc.wait(timeout=3600)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    base = plain_optuna(args.trials, args.epochs, args.device)
    print(f"plain Optuna, in memory        {base:7.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'plain.db'}"
        on_disk = plain_optuna(args.trials, args.epochs, args.device, url)
    print(f"plain Optuna, SQLite file      {on_disk:7.1f} s   {base / on_disk:.2f}x")
    runs: dict[str, tuple[int, tuple[str, ...]]] = {
        "sweep, 1 worker": (1, ()),
        "sweep, 2 workers": (2, ()),
        "sweep, 1 worker --batch 8": (1, ("--batch", "8")),
    }
    walls = {}
    for label, (workers, extra) in runs.items():
        walls[label] = wall = sweep_workers(args.trials, args.epochs, args.device, workers, *extra)
        print(f"{label:<30} {wall:7.1f} s   {base / wall:.2f}x plain Optuna's speed")
    one, batched = walls["sweep, 1 worker"], walls["sweep, 1 worker --batch 8"]
    print(f"--batch 8 against 1 worker: {one / batched:.2f}x faster (target >= 2x)")
    print(f"1 worker against plain Optuna in memory: {one / base:.2f}x its time (target <= 1.15x)")
    whole = {
        label: sweep_workers(args.trials, args.epochs, args.device, 1, *extra, evaluation=True)
        for label, extra in (("1 worker", ()), ("1 worker --batch 8", ("--batch", "8")))
    }
    for label, wall in whole.items():
        print(f"whole sweep, {label:<17} {wall:7.1f} s")
    ratio = whole["1 worker"] / whole["1 worker --batch 8"]
    print(f"whole sweep, --batch 8 against 1 worker: {ratio:.2f}x faster (target >= 2x)")


if __name__ == "__main__":
    main()
