"""Prometheus metrics: what the API reads from the database, and what each worker times.

Trial counts and live workers are read from the database at scrape time, so
every API replica reports the same numbers and nothing is counted twice.
Claim and epoch timings happen inside worker processes, which may run on
other nodes: each worker serves its own histograms (``sweep worker
--metrics-port``), and Prometheus scrapes every worker and sums.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)

from sweep.errors import first_line

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
BACKGROUND_ERRORS = Counter(
    "sweep_background_errors",
    "Exceptions caught in background threads (the API's reaper, a trial's lease), by thread.",
    ["thread"],
    registry=None,
)


def background_error(
    logger: logging.Logger, thread: str, what: str, *, outage: bool = False
) -> None:
    """Log the exception being handled and count it: a background thread carries on after
    an error, but never hides it. An ``outage`` (the database unreachable, retried on the
    next tick) is one warning line; anything else is an error with its traceback."""
    BACKGROUND_ERRORS.labels(thread).inc()
    if outage:
        exc = sys.exc_info()[1]
        said = first_line(exc) if exc is not None else ""
        logger.warning("%s failed in the %s thread, database unreachable: %s", what, thread, said)
        return
    logger.error("%s failed in the %s thread", what, thread, exc_info=True)


def worker_registry() -> CollectorRegistry:
    """What a worker's metrics port serves: its claim and epoch timings, its process."""
    registry = CollectorRegistry()
    registry.register(CLAIM_SECONDS)
    registry.register(EPOCH_SECONDS)
    registry.register(BACKGROUND_ERRORS)
    ProcessCollector(registry=registry)
    return registry


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve this worker's metrics on ``host:port`` from a background thread."""
    start_http_server(port, addr=host, registry=worker_registry())
