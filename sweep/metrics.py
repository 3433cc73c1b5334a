"""Prometheus metrics: what the API reads from the database, and what each worker times.

Trial counts and live workers are read from the database at scrape time, so
every API replica reports the same numbers and nothing is counted twice.
Claim and epoch timings happen inside worker processes, which may run on
other nodes: each worker serves its own histograms (``sweep worker
--metrics-port``), and Prometheus scrapes every worker and sums.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sweep import queries

log = logging.getLogger("sweep.metrics")

# Trainings range from milliseconds (a tiny MLP on a GPU) to minutes per epoch.
EPOCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

CLAIM_SECONDS = Histogram(
    "sweep_claim_seconds",
    "Time for a worker to be handed a trial: sweep lock, budget check and sampler ask.",
    registry=None,
)
EPOCH_SECONDS = Histogram(
    "sweep_epoch_seconds",
    "Wall time between a trial's epoch reports (its first from the claim, set-up included).",
    ["task"],
    buckets=EPOCH_BUCKETS,
    registry=None,
)
REQUEST_SECONDS = Histogram(
    "sweep_http_request_duration_seconds",
    "API request latency by route template.",
    ["method", "route", "status"],
    registry=None,
)


class StoreCollector(Collector):
    """Trial counts and live workers, read from the database when Prometheus scrapes."""

    def __init__(self, engine: Engine, grace_period: float) -> None:
        self._engine = engine
        self._grace_period = grace_period

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("sweep_database_up", "1 if the last scrape could read the database.")
        try:
            counts = queries.state_counts_by_study(self._engine)
            alive = queries.fresh_heartbeats(self._engine, self._grace_period)
        except SQLAlchemyError as exc:  # an outage shows as database_up 0, not a failed scrape
            log.warning("metrics: cannot read the database: %s", str(exc).splitlines()[0])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
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
    ProcessCollector(registry=registry)
    return registry


def worker_registry() -> CollectorRegistry:
    """What a worker's metrics port serves: its claim and epoch timings, its process."""
    registry = CollectorRegistry()
    registry.register(CLAIM_SECONDS)
    registry.register(EPOCH_SECONDS)
    ProcessCollector(registry=registry)
    return registry


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve this worker's metrics on ``host:port`` from a background thread."""
    start_http_server(port, addr=host, registry=worker_registry())
