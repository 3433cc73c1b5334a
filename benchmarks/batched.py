"""Member-epochs per second: K trials trained together vs one trial at a time.

For each K, the same K configurations (dropout and weight decay spread over the
default search space, seeds 0…K-1) train for the same epochs, in the same
process: one after another by ``train_epochs`` (the per-trial loop), as one
``VmappedRun`` (``torch.func.vmap`` over the task's model: what a model task gets
under ``sweep worker --batch K``), and, for the seed's MLP, as one hand-written
``StackedMLPRun`` (batched matmuls). Tasks: ``digits-mlp`` (the seed's MLP) and
the example package's ``digits-cnn``. It prints each rate and the ratios. Each
timing is the best of ``--repeats`` (times 16/K for K < 16), the trainers taking
turns: the machine may be shared.

    .venv/bin/python -m benchmarks.batched --device cpu [--threads 1] [--cpu-time]
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

from sweep.training.batched import BatchedRun
from sweep.training.contract import ModelTask, optimization
from sweep.training.stacked_mlp import StackedMLPRun
from sweep.training.tasks import RunConfig, TrialParams, get_task
from sweep.training.train import pick_device
from sweep.training.vmapped import VmappedRun

Trainer = Callable[[ModelTask, list[RunConfig]], None]


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


def per_trial_loop(task: ModelTask, configs: list[RunConfig]) -> None:
    for config in configs:
        for _ in task.run(config):
            pass


def vmapped(task: ModelTask, configs: list[RunConfig]) -> None:
    opt = optimization({}, task.lr, task.batch_size)
    data = task.data({})
    run = VmappedRun(
        data,
        configs,
        build=task.model,
        loss=task.loss,
        lr=opt.lr,
        batch_size=opt.batch_size,
        device=configs[0].device,
    )
    _train(run)


def stacked_mlp(task: ModelTask, configs: list[RunConfig]) -> None:
    opt = optimization({}, task.lr, task.batch_size)
    data = task.data({})
    device = configs[0].device
    _train(StackedMLPRun(data, configs, lr=opt.lr, batch_size=opt.batch_size, device=device))


def _train(run: BatchedRun) -> None:
    while run.active_slots:
        run.step_epoch()


def best_seconds(
    works: list[Callable[[], None]],
    repeats: int,
    device: str,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """The best time of each of ``works``, run in turns so that each sees the same load."""
    best = [math.inf] * len(works)
    for _ in range(repeats):
        for i, work in enumerate(works):
            start = clock()
            work()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[i] = min(best[i], clock() - start)
    return best


def bench_task(
    name: str, ks: list[int], epochs: int, repeats: int, device: str, clock: Callable[[], float]
) -> None:
    task = get_task(name)
    assert isinstance(task, ModelTask), f"{name} is not a model task"
    trainers: dict[str, Trainer] = {"per-trial loop": per_trial_loop, "vmapped": vmapped}
    if name == "digits-mlp":
        trainers["stacked MLP"] = stacked_mlp
    opt = optimization({}, task.lr, task.batch_size)
    print(
        f"\n{name}: {len(task.data({}).y_train)} training rows, batch {opt.batch_size}, "
        f"Adam lr {opt.lr}, {epochs} epochs per trial, best of {repeats} (x16/K below K=16)"
    )
    for trainer in trainers.values():  # warm-up: first calls import and allocate
        trainer(task, trial_configs(2, 1, device))
    header = "".join(f"{n:>16}" for n in trainers)
    ratios = "  vmapped/loop" + ("  vmapped/stacked" if "stacked MLP" in trainers else "")
    print(f"{'K':>3}{header}{ratios}")
    for k in ks:
        configs = trial_configs(k, epochs, device)
        seconds = best_seconds(
            [partial(trainer, task, configs) for trainer in trainers.values()],
            repeats * max(1, 16 // k),  # short runs are the noisiest: more tries
            device,
            clock,
        )
        rates = "".join(f"{k * epochs / s:>11.1f} me/s" for s in seconds)
        line = f"{k:>3}{rates}  {seconds[0] / seconds[1]:>12.2f}x"
        if len(seconds) == 3:
            line += f"  {seconds[2] / seconds[1]:>15.2f}x"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
    parser.add_argument(
        "--tasks", default="digits-mlp,digits-cnn", help="model tasks, comma-separated"
    )
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
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with this process's CPU seconds (time.process_time), not the wall clock: "
        "less moved by other jobs on a shared machine",
    )
    args = parser.parse_args()

    try:
        device = pick_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    card = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(
        f"device {device} ({card}), torch {torch.__version__}, {args.threads} thread(s), "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f}, {'CPU' if args.cpu_time else 'wall'} time"
    )
    clock = time.process_time if args.cpu_time else time.perf_counter
    ks = [int(k) for k in args.ks.split(",")]
    for name in args.tasks.split(","):
        bench_task(name, ks, args.epochs, args.repeats, device, clock)


if __name__ == "__main__":
    main()
