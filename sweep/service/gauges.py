"""What the API's /metrics reads from the database when Prometheus scrapes."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sweep.metrics import BACKGROUND_ERRORS, REQUEST_SECONDS
from sweep.store import queries

log = logging.getLogger("sweep.metrics")


class StoreCollector(Collector):
    """Trial counts and live workers, read from the database when Prometheus scrapes."""

    def __init__(self, engine: Engine, grace_period: float) -> None:
        self._engine = engine
        self._grace_period = grace_period

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sweep_database_up", "1 if the last scrape could read the database.")
        try:
            with self._engine.connect() as conn:
                counts = queries.state_counts_by_study(conn)
                alive = queries.fresh_heartbeats(conn, self._grace_period)
                available, _running = queries.work_available(conn)
        except SQLAlchemyError as exc:  # an outage shows as database_up 0, not a failed scrape
            log.warning("metrics: cannot read the database: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "sweep_work_available",
            "Trials workers could start now: waiting trials and budget left of active sweeps "
            "(the view sweep_work_available, which KEDA scales workers on).",
            value=available,
        )
        trials = GaugeMetricFamily(
            "sweep_trials", "Trials of each sweep by Optuna state.", labels=["sweep", "state"]
        )
        completed = CounterMetricFamily(
            "sweep_trials_completed", "Trials that completed with a value.", labels=["sweep"]
        )
        workers = GaugeMetricFamily(
            "sweep_workers_alive",
            "Workers holding a trial of the sweep whose heartbeat is within the grace period.",
            labels=["sweep"],
        )
        for sweep, by_state in sorted(counts.items()):
            for state, n in sorted(by_state.items()):
                trials.add_metric([sweep, state], n)
            completed.add_metric([sweep], by_state.get("COMPLETE", 0))
            workers.add_metric([sweep], alive.get(sweep, 0))
        yield trials
        yield completed
        yield workers


def api_registry(engine: Engine, grace_period: float) -> CollectorRegistry:
    """What the API's /metrics serves: the database's view, request latency, its process."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine, grace_period))
    registry.register(REQUEST_SECONDS)
    registry.register(BACKGROUND_ERRORS)
    ProcessCollector(registry=registry)
    return registry
