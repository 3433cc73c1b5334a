"""Sweeps: create, list, read, the best configurations, and control."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Path, Query

from api.deps import EngineDep, SessionDep, StorageDep
from api.schemas import ErrorOut, SweepCreate, SweepOut, SweepPage, TrialOut
from sweep import results, sweeps
from sweep.models import SWEEP_STATUSES

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

SweepName = Annotated[str, Path(pattern=sweeps.NAME_PATTERN)]
StatusName = Literal["queued", "running", "paused", "completed", "cancelled", "failed"]
assert set(get_args(StatusName)) == set(SWEEP_STATUSES)
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@router.post("", status_code=201, response_model=SweepOut, responses={409: {"model": ErrorOut}})
def create_sweep(
    body: SweepCreate, session: SessionDep, engine: EngineDep, storage: StorageDep
) -> SweepOut:
    """Queue a new sweep; workers start on it at once."""
    sweep = sweeps.create_sweep(session, storage, body)
    return SweepOut.from_progress(sweeps.SweepProgress(sweep, {}, 0))


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    engine: EngineDep,
    status: StatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> SweepPage:
    """Sweeps, newest first; follow ``next_cursor`` for older ones."""
    page = sweeps.list_sweeps(
        session, status=status, limit=limit + 1, before_id=int(cursor) if cursor else None
    )
    more = len(page) > limit
    page = page[:limit]
    return SweepPage(
        items=[SweepOut.from_progress(sweeps.sweep_progress(engine, s)) for s in page],
        next_cursor=str(page[-1].id) if more else None,
    )


@router.get("/{name}", response_model=SweepOut, responses=ERRORS)
def get_sweep(name: SweepName, session: SessionDep, engine: EngineDep) -> SweepOut:
    """One sweep: status, budget and trial counts."""
    return SweepOut.from_progress(sweeps.sweep_progress(engine, sweeps.get_sweep(session, name)))


@router.get("/{name}/best", response_model=TrialOut, responses=ERRORS)
def best(name: SweepName, session: SessionDep, engine: EngineDep) -> TrialOut:
    """The configuration with the lowest validation loss so far (404 until one completes)."""
    sweep = sweeps.get_sweep(session, name)
    return TrialOut.from_result(results.best_trial(engine, sweep))


@router.get("/{name}/top", response_model=list[TrialOut], responses=ERRORS)
def top(
    name: SweepName,
    session: SessionDep,
    engine: EngineDep,
    k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> list[TrialOut]:
    """The ``k`` best configurations so far, best first."""
    sweep = sweeps.get_sweep(session, name)
    return [TrialOut.from_result(r) for r in results.top_trials(engine, sweep, k)]


def _control(action: str, name: str, session: SessionDep, engine: EngineDep) -> SweepOut:
    sweep = sweeps.control_sweep(session, name, action)
    return SweepOut.from_progress(sweeps.sweep_progress(engine, sweep))


@router.post("/{name}/pause", response_model=SweepOut, responses=ERRORS)
def pause(name: SweepName, session: SessionDep, engine: EngineDep) -> SweepOut:
    """Stop handing out trials; running trials finish."""
    return _control("pause", name, session, engine)


@router.post("/{name}/resume", response_model=SweepOut, responses=ERRORS)
def resume(name: SweepName, session: SessionDep, engine: EngineDep) -> SweepOut:
    """Hand out trials again."""
    return _control("resume", name, session, engine)


@router.post("/{name}/cancel", response_model=SweepOut, responses=ERRORS)
def cancel(name: SweepName, session: SessionDep, engine: EngineDep) -> SweepOut:
    """Stop the sweep for good; running trials stop at their next epoch."""
    return _control("cancel", name, session, engine)
