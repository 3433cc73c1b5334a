"""Store cost per trial of a sweep worker against bare Optuna on the same database, in one run.

Service: a real Worker claiming and running trials of the no-op `synthetic` task
(claim + per-epoch reports written by the worker's epoch writer and pruning
decided on its cached view + finish + settle, heartbeats included).
Bare Optuna: ask + per-epoch report/should_prune + tell on an RDBStorage.
Prints ms per trial for each and the ratio (target ≤ 0.5×), after checking that
every epoch of every trial is in the store.
"""

from __future__ import annotations

import argparse
import time
import warnings

import optuna

from benchmarks._common import bench_settings, create_sweep, fresh_database
from sweep import metrics
from sweep.definition.space import Space
from sweep.store.engine import engine_options, tune_sqlite
from sweep.worker.loop import Worker

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)


def bare_optuna(url: str, trials: int, epochs: int) -> float:
    """Seconds per trial of plain Optuna doing the same reporting."""
    # The same engine settings as the service's storage, so only orchestration is compared.
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_options(url))
    tune_sqlite(storage.engine)
    # No pruning on either side, so both run every epoch (should_prune is still called).
    study = optuna.create_study(
        storage=storage, study_name="bare", pruner=optuna.pruners.NopPruner()
    )
    dists = Space().distributions()
    start = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(dists)
        for epoch in range(epochs):
            trial.report(1.0 / (epoch + 1), epoch)
            if trial.should_prune():
                break
        study.tell(trial, 0.5)
    return (time.perf_counter() - start) / trials


def _claim_seconds() -> float:
    """Seconds spent in claims by this process so far (the worker's claim histogram)."""
    for family in metrics.CLAIM_SECONDS.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                return float(sample.value)
    return 0.0


def service(url: str, trials: int, epochs: int) -> tuple[float, float]:
    """Seconds per trial of a sweep worker running the no-op task, and of them in claims."""
    # search trials only: the baseline and re-evaluations are extra work, not overhead
    create_sweep(
        url,
        "service",
        n_trials=trials,
        epochs=epochs,
        pruner="none",
        baseline=False,
        reevaluate_top=0,
    )
    worker = Worker(bench_settings(url), device="cpu", exit_when_idle=True)
    claims_before, start = _claim_seconds(), time.perf_counter()
    worker.run()
    seconds = (time.perf_counter() - start) / trials
    in_claims = (_claim_seconds() - claims_before) / trials
    stored = optuna.load_study(study_name="service", storage=url).get_trials(deepcopy=False)
    epochs_stored = sum(len(trial.intermediate_values) for trial in stored)
    assert epochs_stored == trials * epochs, f"{epochs_stored} of {trials * epochs} epochs stored"
    return seconds, in_claims


def measure(kind: str, trials: int, epochs: int) -> float:
    with fresh_database(kind) as url:
        bare = bare_optuna(url, trials, epochs)
        ours, in_claims = service(url, trials, epochs)
    ratio = ours / bare
    print(
        f"{kind:<9} bare Optuna {bare * 1e3:7.1f} ms/trial   sweep {ours * 1e3:7.1f} ms/trial"
        f"   ratio {ratio:.2f}x  (target <= 0.5x; {trials} trials x {epochs} epochs)"
    )
    rest = ours - in_claims
    print(
        f"{'':<9} of which claims {in_claims * 1e3:7.1f} ms/trial; the rest (reports, pruning,"
        f" finish, settle) {rest * 1e3:7.1f} ms/trial = {rest / bare:.2f}x bare Optuna"
    )
    return ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    for kind in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        measure(kind, args.trials, args.epochs)


if __name__ == "__main__":
    main()
