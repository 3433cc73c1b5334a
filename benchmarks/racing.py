"""Which way of choosing finds the truly best configuration: the search run, fixed
re-evaluation, or racing? And are the 95% intervals honest?

Repeated small sweeps of the ``synthetic`` task with seed noise of a known std
around a known true loss per configuration, simulated in process with the same
pure rules the scheduler applies (``sweep.definition.statistics``), no database:
each sweep tries 12 random configurations once (the search), then

- search: picks the lowest search run;
- fixed: re-trains the 3 best on 3 fresh seeds and picks the lowest fresh mean
  (today's default re-evaluation);
- race: the same 3 x 3, then a seed per round for those still in the race
  (``race_step``) until decided, alone, or 10 seeds each; picks the leader.

It prints how often each picks the configuration with the lowest true loss of
the 12, the extra trials each costs, and how often the chosen configuration's
95% interval covers its true loss.

    python -m benchmarks.racing                  # 200 sweeps, noise 0.02
    python -m benchmarks.racing --sweeps 500 --noise 0.01
"""

from __future__ import annotations

import argparse
import random
import statistics

from sweep.definition.space import trial_params
from sweep.definition.statistics import race_step, summarize
from sweep.training.synthetic import SyntheticTask, true_loss
from sweep.training.tasks import RunConfig, TrialParams

EPOCHS, CONFIGS, TOP, FIXED_SEEDS, RACE_SEEDS = 4, 12, 3, 3, 10


def run(params: TrialParams, seed: int, noise: float) -> float:
    """One synthetic run's best validation loss."""
    config = RunConfig(params, EPOCHS, seed, options={"noise": noise})
    return min(r.val_loss for r in SyntheticTask().run(config))


def one_sweep(index: int, noise: float, rng: random.Random) -> dict[str, tuple[bool, int, bool]]:
    """For each method: (picked the truly best, extra trials, interval covered the truth)."""
    configs = [
        trial_params({"dropout": rng.uniform(0.2, 0.5), "weight_decay": 10 ** rng.uniform(-5, -2)})
        for _ in range(CONFIGS)
    ]
    truth = [true_loss(p, EPOCHS) for p in configs]
    best = min(range(CONFIGS), key=truth.__getitem__)
    base = 100_000 * index
    search = [run(p, base + i, noise) for i, p in enumerate(configs)]
    top = sorted(range(CONFIGS), key=search.__getitem__)[:TOP]
    fresh = {n: [run(configs[n], base + 1000 + j, noise) for j in range(FIXED_SEEDS)] for n in top}

    def outcome(values: dict[int, list[float]], extra: int) -> tuple[bool, int, bool]:
        chosen = min(values, key=lambda n: statistics.fmean(values[n]))
        ci = summarize(values[chosen]).ci95
        return chosen == best, extra, ci is not None and ci[0] <= truth[chosen] <= ci[1]

    picked = min(range(CONFIGS), key=search.__getitem__)
    found = {"search": (picked == best, 0, False)}
    found["fixed"] = outcome(fresh, TOP * FIXED_SEEDS)
    alive = {n: list(v) for n, v in fresh.items()}
    extra = TOP * FIXED_SEEDS
    while True:
        step = race_step(alive, RACE_SEEDS)
        for n in step.dropped:
            del alive[n]
        if step.over or len(next(iter(alive.values()))) >= RACE_SEEDS:
            break
        j = len(next(iter(alive.values())))
        for n in alive:
            alive[n].append(run(configs[n], base + 1000 + j, noise))
            extra += 1
    found["race"] = outcome(alive, extra)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.02)
    args = parser.parse_args()
    rng = random.Random(0)
    rows: dict[str, list[tuple[bool, int, bool]]] = {"search": [], "fixed": [], "race": []}
    for index in range(args.sweeps):
        for method, result in one_sweep(index, args.noise, rng).items():
            rows[method].append(result)
    print(f"{args.sweeps} sweeps of {CONFIGS} configurations, seed noise std {args.noise}")
    print(f"{'method':<8} {'truly best':>10} {'extra trials':>13} {'95% CI covers':>14}")
    for method, found in rows.items():
        hit = sum(f[0] for f in found) / len(found)
        cost = statistics.fmean(f[1] for f in found)
        cover = "-" if method == "search" else f"{sum(f[2] for f in found) / len(found):.3f}"
        print(f"{method:<8} {hit:>10.3f} {cost:>13.1f} {cover:>14}")


if __name__ == "__main__":
    main()
