"""The FastAPI application, built from settings by ``create_app``."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

import sweep
from api.bodylimit import BodyLimit
from api.capacity import RequestSlots
from api.errors import install_error_handlers
from api.pages import routes as pages
from api.pages.dashboard import mount_dashboard
from api.pages.sessions import session_key
from api.ratelimit import RequestLimiter
from api.routes import health, metrics, sweeps, tasks, tokens, trials
from sweep.config import Settings
from sweep.errors import UnsupportedOptunaSchema
from sweep.metrics import background_error
from sweep.scheduler.claims import active_sweeps
from sweep.scheduler.settling import reap_stale_trials, settle_sweep
from sweep.service.gauges import api_registry
from sweep.store.engine import Pooling, is_outage, make_engine, make_session_factory
from sweep.store.migrations import check_optuna_schema

log = logging.getLogger("sweep.api")


class Reaper:
    """Fails stale trials of active sweeps on a timer, so a dead worker's trial is retried."""

    def __init__(self, settings: Settings, app: FastAPI) -> None:
        self._settings = settings
        self._app = app
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)

    def _loop(self) -> None:
        factory = self._app.state.session_factory
        while not self._stop.wait(self._settings.reap_interval):
            try:
                sweeps_now = active_sweeps(factory)
            except Exception as exc:  # an outage must not end the timer
                background_error(log, "reaper", "listing active sweeps", outage=is_outage(exc))
                continue
            for sweep_row in sweeps_now:
                try:
                    reap_stale_trials(self._settings, factory, sweep_row)
                    settle_sweep(self._settings, factory, sweep_row.id)
                except Exception as exc:  # nor one sweep's trouble stop the others being reaped
                    what = f"reaping sweep {sweep_row.name!r}"
                    background_error(log, "reaper", what, outage=is_outage(exc))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def refuse_untested_optuna(engine: Engine) -> None:
    """Stop the API from starting on an Optuna schema sweep was not tested with.

    A database that is unreachable or not migrated yet is left to /readyz to report.
    """
    try:
        check_optuna_schema(engine)
    except UnsupportedOptunaSchema as exc:
        log.error("%s", exc.message)
        raise
    except Exception as exc:
        if not is_outage(exc):
            raise


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (read from the environment if not given)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        refuse_untested_optuna(app.state.engine)
        reaper = Reaper(settings, app)
        reaper.start()
        yield
        reaper.stop()
        app.state.engine.dispose()

    app = FastAPI(
        title="sweep",
        version=sweep.__version__,
        description="Queue Optuna sweeps over dropout and weight decay; read the best configs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url, Pooling.of(settings))
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.limiter = RequestLimiter(settings.rate_limit)
    secret = settings.session_secret
    app.state.session_key = session_key(secret.get_secret_value() if secret else None)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestSlots, slots=settings.max_requests, wait_s=settings.queue_timeout)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.include_router(health.router)
    app.include_router(sweeps.router)
    app.include_router(trials.router)
    app.include_router(tasks.router)
    if settings.metrics:
        app.state.metrics = api_registry(app.state.engine, settings.grace_period)
        app.add_middleware(metrics.RequestTimer)
        app.include_router(metrics.router)
    app.include_router(tokens.router)
    app.include_router(pages.router)
    mount_dashboard(app)  # before /static: the dashboard's page asks for /static/bundle.js
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return app
