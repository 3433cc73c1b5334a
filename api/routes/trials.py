"""A sweep's trials: pages of them, and one with its learning curves."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from api.deps import ConnectionDep, SessionDep, SettingsDep, authorize
from api.params import StoredInt
from api.routes.sweeps import ERRORS, SweepName
from api.schemas import ErrorOut, TrialDetail, TrialEnqueue, TrialOut, TrialPage
from sweep.service import sweeps
from sweep.service.enqueue import enqueue_configuration
from sweep.store import results
from sweep.store.engine import transaction

router = APIRouter(
    prefix="/v1/sweeps/{name}/trials", tags=["trials"], dependencies=[Depends(authorize)]
)

TrialState = Literal["WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL"]


@router.get("", response_model=TrialPage, responses=ERRORS)
def list_trials(
    name: SweepName,
    session: SessionDep,
    conn: ConnectionDep,
    state: TrialState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[StoredInt | None, Query()] = None,
) -> TrialPage:
    """Trials in number order; follow ``next_cursor`` for the next page."""
    sweep = sweeps.get_sweep(session, name)
    after = -1 if cursor is None else cursor
    page = results.trial_page(conn, sweep, after_number=after, limit=limit + 1, state=state)
    more = len(page) > limit
    page = page[:limit]
    return TrialPage(
        items=[TrialOut.from_result(r) for r in page],
        next_cursor=str(page[-1].number) if more else None,
    )


@router.get("/{number}", response_model=TrialDetail, responses=ERRORS)
def get_trial(
    name: SweepName,
    number: Annotated[StoredInt, Path()],
    session: SessionDep,
    conn: ConnectionDep,
) -> TrialDetail:
    """One trial with its per-epoch train loss, validation loss and accuracy."""
    sweep = sweeps.get_sweep(session, name)
    return TrialDetail.from_result(results.trial_result(conn, sweep, number))


@router.post(
    "", status_code=201, response_model=TrialOut, responses={**ERRORS, 422: {"model": ErrorOut}}
)
def enqueue(
    name: SweepName, body: TrialEnqueue, request: Request, settings: SettingsDep
) -> TrialOut:
    """Queue a configuration to try next (Optuna's ``enqueue_trial``): one value per parameter
    of the space, within its range. It takes one configuration of the budget (409 when the
    budget is spent or the sweep finished; extend it first)."""
    factory = request.app.state.session_factory
    number = enqueue_configuration(settings, factory, name, body.params)
    # A transaction of its own, begun after the trial was added, so it sees it.
    with transaction(factory) as session:
        sweep = sweeps.get_sweep(session, name)
        return TrialOut.from_result(results.trial_result(session.connection(), sweep, number))
