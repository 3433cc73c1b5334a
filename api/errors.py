"""One table mapping sweep's errors to HTTP statuses, and the handlers that apply it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from optuna.exceptions import StorageInternalError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from sweep.errors import (
    AlreadyExists,
    DatabaseUnavailable,
    InvalidSweep,
    InvalidToken,
    InvalidTransition,
    NoResultYet,
    NotAuthenticated,
    NotEnoughTrials,
    NotFound,
    PermissionDenied,
    RateLimited,
    SchemaNotReady,
    ServerBusy,
    SweepError,
)
from sweep.store.engine import is_outage

log = logging.getLogger("sweep.api")

STATUS_BY_ERROR: dict[type[SweepError], int] = {
    NotFound: 404,
    NoResultYet: 404,
    AlreadyExists: 409,
    InvalidTransition: 409,
    NotEnoughTrials: 409,
    InvalidSweep: 422,
    InvalidToken: 422,
    NotAuthenticated: 401,
    PermissionDenied: 403,
    RateLimited: 429,
    SchemaNotReady: 503,
    DatabaseUnavailable: 503,
}


def status_for(error: SweepError) -> int:
    """The HTTP status for ``error`` (its class or nearest listed base)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def headers_for(error: SweepError) -> dict[str, str]:
    """Headers the status calls for: the auth scheme on 401, the wait on 429."""
    if isinstance(error, NotAuthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, ServerBusy):
        return {"Retry-After": "1"}
    if isinstance(error, DatabaseUnavailable):
        return {"Retry-After": "5"}
    return {}


def install_error_handlers(app: FastAPI) -> None:
    """Answer SweepErrors with their status and message, and outages with 503, never a traceback."""

    @app.exception_handler(SweepError)
    async def _sweep_error(_request: Request, exc: SweepError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message}, status_code=status_for(exc), headers=headers_for(exc)
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # A body that json.loads could not take (too deeply nested, not UTF-8, a number
            # with thousands of digits) is bad input like any other: 422, not 400.
            reason = type(exc.__cause__).__name__
            detail = [{"loc": ["body"], "msg": f"the body is not valid JSON ({reason})",
                       "type": "json_invalid"}]  # fmt: skip
            return JSONResponse({"detail": detail}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The rejected input is left out: it may be NaN (not JSON) or a large body.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": _message(e), "type": e.get("type")}
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
        return await _sweep_error(request, DatabaseUnavailable())

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, _exc: Exception) -> JSONResponse:
        # Every pooled connection stayed busy for SWEEP_DB_POOL_TIMEOUT: retry, not a 500.
        log.warning("no free database connection for %s %s", request.method, request.url.path)
        return await _sweep_error(request, ServerBusy())


def _message(error: dict[str, object]) -> str:
    message = str(error.get("msg", ""))
    context = error.get("ctx")
    if error.get("type") == "json_invalid" and isinstance(context, dict) and "error" in context:
        return f"{message}: {context['error']}"  # e.g. "Expecting value", never the input
    return message
