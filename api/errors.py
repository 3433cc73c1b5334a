"""One table mapping sweep's errors to HTTP statuses, and the handlers that apply it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError

from sweep.db import is_outage
from sweep.errors import (
    AlreadyExists,
    DatabaseUnavailable,
    InvalidSweep,
    InvalidTransition,
    NoResultYet,
    NotFound,
    SchemaNotReady,
    SweepError,
)

log = logging.getLogger("sweep.api")

STATUS_BY_ERROR: dict[type[SweepError], int] = {
    NotFound: 404,
    NoResultYet: 404,
    AlreadyExists: 409,
    InvalidTransition: 409,
    InvalidSweep: 422,
    SchemaNotReady: 503,
    DatabaseUnavailable: 503,
}


def status_for(error: SweepError) -> int:
    """The HTTP status for ``error`` (its class or nearest listed base)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def install_error_handlers(app: FastAPI) -> None:
    """Answer SweepErrors with their status and message, and outages with 503, never a traceback."""

    @app.exception_handler(SweepError)
    async def _sweep_error(_request: Request, exc: SweepError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The rejected input is left out: it may be NaN (not JSON) or a large body.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(StorageInternalError)
    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        if not is_outage(exc):
            log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"detail": "internal error; see the API's log"}, status_code=500)
        log.warning("database unavailable on %s %s", request.method, request.url.path)
        message = DatabaseUnavailable().message
        return JSONResponse({"detail": message}, status_code=503, headers={"Retry-After": "5"})
