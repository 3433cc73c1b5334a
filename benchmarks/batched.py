"""Member-epochs per second: K trials trained as one stacked model vs one trial at a time.

For each K, the same K configurations (dropout and weight decay spread over the
default search space, seeds 0…K-1) train for the same epochs on the default
digits task, first by calling ``train_epochs`` K times (the per-trial loop),
then as one ``BatchedRun``; it prints both rates and their ratio. Each timing
is the best of ``--repeats`` (times 16/K for K < 16), the two taking turns:
the machine may be shared.

    .venv/bin/python benchmarks/batched.py --device cpu
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import time
from collections.abc import Callable
from functools import partial

import torch

from sweep.training.builtin import DEFAULT_TRAIN_SIZE
from sweep.training.contract import DEFAULT_BATCH_SIZE, DEFAULT_LR
from sweep.training.data import Splits, load_digits_split
from sweep.training.stacked_mlp import StackedMLPRun as BatchedRun
from sweep.training.tasks import RunConfig, TrialParams
from sweep.training.train import pick_device, train_epochs


def trial_configs(k: int, epochs: int, device: str) -> list[RunConfig]:
    """K configurations as a sweep of the default space would draw them."""
    rng = random.Random(0)
    return [
        RunConfig(
            TrialParams(
                dropout_1=rng.uniform(0.2, 0.5),
                dropout_2=rng.uniform(0.2, 0.5),
                weight_decay=10 ** rng.uniform(-5, -2),
            ),
            epochs=epochs,
            seed=seed,
            device=device,
        )
        for seed in range(k)
    ]


def per_trial_loop(data: Splits, configs: list[RunConfig]) -> None:
    for config in configs:
        for _ in train_epochs(data, config, lr=DEFAULT_LR, batch_size=DEFAULT_BATCH_SIZE):
            pass


def batched(data: Splits, configs: list[RunConfig], device: str) -> None:
    run = BatchedRun(data, configs, lr=DEFAULT_LR, batch_size=DEFAULT_BATCH_SIZE, device=device)
    while run.active_slots:
        run.step_epoch()


def best_seconds(works: list[Callable[[], None]], repeats: int, device: str) -> list[float]:
    """The best time of each of ``works``, run in turns so that each sees the same load."""
    best = [math.inf] * len(works)
    for _ in range(repeats):
        for i, work in enumerate(works):
            start = time.perf_counter()
            work()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
    parser.add_argument("--ks", default="1,4,16,64", help="member counts, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per measurement at K >= 16 (best)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch CPU threads (default: all cores, as one worker on this machine uses)",
    )
    args = parser.parse_args()

    try:
        device = pick_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    data = load_digits_split(DEFAULT_TRAIN_SIZE)
    card = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(
        f"device {device} ({card}), torch {torch.__version__}, {args.threads} thread(s), "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"digits-mlp: {DEFAULT_TRAIN_SIZE} training rows, batch {DEFAULT_BATCH_SIZE}, "
        f"{args.epochs} epochs per trial, best of {args.repeats} (x16/K below K=16)"
    )
    warm_up = trial_configs(2, 1, device)
    per_trial_loop(data, warm_up)
    batched(data, warm_up, device)

    print(f"{'K':>3}  {'per-trial loop':>16}  {'batched':>16}  {'ratio':>6}")
    for k in (int(k) for k in args.ks.split(",")):
        configs = trial_configs(k, args.epochs, device)
        member_epochs = k * args.epochs
        repeats = args.repeats * max(1, 16 // k)  # short runs are the noisiest: more tries
        loop, stacked = best_seconds(
            [partial(per_trial_loop, data, configs), partial(batched, data, configs, device)],
            repeats,
            device,
        )
        print(
            f"{k:>3}  {member_epochs / loop:>10.1f} me/s  {member_epochs / stacked:>10.1f} me/s"
            f"  {loop / stacked:>5.2f}x"
        )


if __name__ == "__main__":
    main()
