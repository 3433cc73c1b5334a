"""50 SIGKILLs of workers at random moments of a sweep on PostgreSQL.

Three workers run a sweep of the `synthetic` task (eight 0.1 s epochs per
trial); at random intervals one is killed with SIGKILL and a fresh one started.
Afterwards, from the study:
  lost trials       configurations that never finished (must be 0)
  retries per kill  re-queued copies per trial that was running in a killed
                    worker (must be exactly 1)
  wrongly failed    FAIL trials that no kill explains (must be 0)
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks._common import create_sweep, fresh_database, start_worker

warnings.filterwarnings("ignore")


def running_trial_of(study: optuna.Study, pid: int) -> int | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(t.user_attrs.get("worker", "")).split(":")[1:2] == [str(pid)]:
            return t.number
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    n_trials = args.kills * 2
    with fresh_database("postgres") as url, tempfile.TemporaryDirectory() as logs:
        create_sweep(
            url,
            "faults",
            n_trials=n_trials,
            epochs=8,
            pruner="none",
            max_attempts=20,
            task_options={"epoch_seconds": 0.1},
        )
        study = optuna.load_study(study_name="faults", storage=url)
        procs = [start_worker(url, Path(logs) / f"w{i}.log") for i in range(args.workers)]
        victims: list[int] = []
        started = time.monotonic()
        for kill in range(args.kills):
            i = rng.randrange(len(procs))
            # A random moment once the worker is working: mid-trial, between
            # epochs or between trials.
            deadline = time.monotonic() + 15
            while running_trial_of(study, procs[i].pid) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.5))
            trial = running_trial_of(study, procs[i].pid)
            procs[i].send_signal(signal.SIGKILL)
            procs[i].wait()
            if trial is not None and running_trial_of(study, procs[i].pid) == trial:
                victims.append(trial)
            procs[i] = start_worker(url, Path(logs) / f"w{i}-{kill}.log")
        # Let the sweep finish, then stop the (idle) workers.
        finisher = start_worker(url, Path(logs) / "finisher.log", "--exit-when-idle")
        finisher.wait(timeout=600)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
        elapsed = time.monotonic() - started

        trials = study.get_trials(deepcopy=False)
        states = Counter(t.state for t in trials)
        finished = states[TrialState.COMPLETE] + states[TrialState.PRUNED]
        retries = Counter(
            int(t.system_attrs["failed_trial"]) for t in trials if "failed_trial" in t.system_attrs
        )
        released = {t.number for t in trials if "released" in str(t.user_attrs.get("error", ""))}
        killed = set(victims)
        failed = {t.number for t in trials if t.state == TrialState.FAIL}
        wrongly_failed = failed - killed - released
        per_kill = Counter(len([t for t in trials if _retry_of(t) == v]) for v in killed)
        print(f"{args.kills} SIGKILLs ({len(killed)} hit a running trial) in {elapsed:.0f} s")
        print(f"trials lost:          {n_trials - finished}  (configurations: {n_trials})")
        print(f"retries per kill:     {dict(per_kill)}  (count of kills with that many retries)")
        print(f"wrongly failed:       {len(wrongly_failed)}")
        print(f"still RUNNING:        {states[TrialState.RUNNING]}")
        print(f"re-queued copies:     {sum(retries.values())}")


def _retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    history = trial.system_attrs.get("retry_history")
    return int(history[-1]) if history else None


if __name__ == "__main__":
    main()
