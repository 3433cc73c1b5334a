"""The view sweep_work_available (migration 0009) counts exactly the trials workers can claim.

KEDA scales the worker Deployment on this view and the API's /metrics serves it as
the gauge ``sweep_work_available``, so it must agree with ``claim_trial`` and
``claim_evaluation``: every trial it counts is one a worker then gets, and no more,
also for sweeps held back by their ``max_concurrent``.
"""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from sweep.config import Settings
from sweep.definition.spec import SweepScheduling
from sweep.definition.status import SweepStatus
from sweep.scheduler.claims import Claim, claim_trial
from sweep.scheduler.evaluation import claim_evaluation
from sweep.scheduler.leases import TrialRun
from sweep.service import sweeps
from sweep.service.gauges import api_registry
from sweep.store import queries
from sweep.store.engine import make_engine, transaction
from sweep.store.sweep_rows import set_status
from tests.helpers import make_sweep


def _claim_all(settings: Settings, factory: sessionmaker[Session], sweep_id: int) -> list[Claim]:
    """What workers get from the sweep, asking until it has nothing to hand out."""
    claims: list[Claim] = []
    for claim_one in (claim_trial, claim_evaluation):
        while (claim := claim_one(settings, factory, sweep_id, "w")) is not None:
            claims.append(claim)
    return claims


def _hold(settings: Settings, factory: sessionmaker[Session], sweep_id: int, n: int) -> None:
    """Put ``n`` of the sweep's trials in training."""
    for _ in range(n):
        assert claim_trial(settings, factory, sweep_id, "w") is not None


def _gauge(settings: Settings) -> float:
    engine = make_engine(settings.database_url)
    page = generate_latest(api_registry(engine, settings.grace_period)).decode()
    engine.dispose()
    [family] = [f for f in text_string_to_metric_families(page) if f.name == "sweep_work_available"]
    return family.samples[0].value


def test_the_view_counts_the_trials_workers_then_claim(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    engine = make_engine(settings.database_url)

    def work_available() -> tuple[int, int]:
        with engine.connect() as conn:
            return queries.work_available(conn)

    assert work_available() == (0, 0)  # an empty store: scale to zero

    queued = make_sweep(settings, factory, "queued", n_trials=3)  # + its baseline runs
    running = make_sweep(settings, factory, "running", n_trials=3)
    held = claim_trial(settings, factory, running, "w")  # a trial in training
    assert held is not None
    make_sweep(settings, factory, "paused", n_trials=3)
    retried = make_sweep(settings, factory, "retried", n_trials=2, baseline=False)
    failed = claim_trial(settings, factory, retried, "w")
    assert failed is not None
    with TrialRun(settings, factory, failed) as run:
        run.fail("RuntimeError: CUDA out of memory", retry=True)  # its retry now waits
    # Capped sweeps: room for one more; at the cap; cap lowered below what already runs.
    capped = make_sweep(settings, factory, "capped", n_trials=4, max_concurrent=2, baseline=False)
    _hold(settings, factory, capped, 1)
    at_cap = make_sweep(settings, factory, "at-cap", n_trials=3, max_concurrent=1, baseline=False)
    _hold(settings, factory, at_cap, 1)
    lowered = make_sweep(settings, factory, "lowered", n_trials=4, baseline=False)
    _hold(settings, factory, lowered, 2)
    make_sweep(settings, factory, "cancelled", n_trials=3)
    completed = make_sweep(settings, factory, "completed", n_trials=3)
    with transaction(factory) as session:
        sweeps.control_sweep(session, "paused", "pause")
        sweeps.control_sweep(session, "cancelled", "cancel")
        set_status(session, completed, SweepStatus.COMPLETED, only_from=(SweepStatus.QUEUED,))
        sweeps.change_scheduling(session, "lowered", SweepScheduling(max_concurrent=1))

    available, in_training = work_available()
    # the baseline runs on each of the 3 evaluation seeds (paired with the re-evaluations);
    # the capped sweeps add their room under the cap, not their budget left (3, 2, 2)
    assert (available, in_training) == (6 + 5 + 2 + 1 + 0 + 0, 1 + 1 + 1 + 2)
    assert _gauge(settings) == available

    claimed = {
        name: _claim_all(settings, factory, sweep_id)
        for name, sweep_id in {
            "queued": queued,
            "running": running,
            "retried": retried,
            "capped": capped,
            "at-cap": at_cap,
            "lowered": lowered,
        }.items()
    }
    assert {name: len(claims) for name, claims in claimed.items()} == {
        "queued": 6,  # 3 configurations and the baseline on 3 seeds
        "running": 5,  # the 2 configurations left and the baseline on 3 seeds
        "retried": 2,  # the retry (attempt 2) and the one configuration left
        "capped": 1,  # up to its cap of 2 running
        "at-cap": 0,
        "lowered": 0,  # 2 running over a cap of 1: nothing until one finishes
    }
    assert sorted(claim.attempt for claim in claimed["retried"]) == [1, 2]
    assert sum(len(claims) for claims in claimed.values()) == available
    with factory() as session:  # paused, cancelled and completed sweeps hand out nothing
        for name in ("paused", "cancelled", "completed"):
            sweep_id = sweeps.get_sweep(session, name).id
            assert _claim_all(settings, factory, sweep_id) == [], name

    assert work_available() == (0, available + in_training)
    assert _gauge(settings) == 0
    with engine.connect() as conn:  # the statement the KEDA trigger runs (deploy/k8s)
        keda = conn.execute(text("SELECT available + running FROM sweep_work_available"))
        assert keda.scalar_one() == available + in_training
    engine.dispose()
