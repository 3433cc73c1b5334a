"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import EngineDep
from api.schemas import Health
from sweep.errors import SchemaNotReady, UnsupportedOptunaSchema
from sweep.store.migrations import check_ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(engine: EngineDep) -> Health | JSONResponse:
    """The database answers and both schemas (the service's and Optuna's) are current,
    Optuna's at a version sweep was tested with."""
    try:
        check_ready(engine)
    except (SchemaNotReady, UnsupportedOptunaSchema) as exc:
        return JSONResponse({"status": "not ready", "detail": exc.message}, status_code=503)
    return Health(status="ok")
