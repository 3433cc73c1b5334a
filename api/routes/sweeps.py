"""Sweeps: create, list, read, the best configurations, and control."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.deps import AUTH_OFF, ConnectionDep, SessionDep, SettingsDep, StorageDep, authorize
from api.params import StoredInt
from api.schemas import (
    BestOut,
    ConfigurationOut,
    ErrorOut,
    ImportanceOut,
    SweepChange,
    SweepCreate,
    SweepExtend,
    SweepOut,
    SweepPage,
    TestOut,
)
from sweep.definition.evaluation import Kind
from sweep.definition.spec import NAME_PATTERN
from sweep.definition.status import SWEEP_STATUSES
from sweep.service import charts, importance, sweeps
from sweep.service.tokens import TokenInfo
from sweep.store import results

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], dependencies=[Depends(authorize)])

SweepName = Annotated[str, Path(pattern=NAME_PATTERN)]
StatusName = Literal["queued", "running", "paused", "completed", "cancelled", "failed"]
assert set(get_args(StatusName)) == set(SWEEP_STATUSES)
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


def _link(path: str, method: str) -> dict[str, Any]:
    # An OpenAPI link: the created sweep's name feeds the routes under /v1/sweeps/{name}.
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {
        "operationRef": f"#/paths/{pointer}/{method}",
        "parameters": {"name": "$response.body#/name"},
    }


CREATED_LINKS = {
    "GetSweep": _link("/v1/sweeps/{name}", "get"),
    "Best": _link("/v1/sweeps/{name}/best", "get"),
    "Top": _link("/v1/sweeps/{name}/top", "get"),
    "Trials": _link("/v1/sweeps/{name}/trials", "get"),
    "Pause": _link("/v1/sweeps/{name}/pause", "post"),
    "Resume": _link("/v1/sweeps/{name}/resume", "post"),
    "Cancel": _link("/v1/sweeps/{name}/cancel", "post"),
    "Extend": _link("/v1/sweeps/{name}/extend", "post"),
}


@router.post(
    "",
    status_code=201,
    response_model=SweepOut,
    responses={201: {"links": CREATED_LINKS}, 409: {"model": ErrorOut}},
)
def create_sweep(
    body: SweepCreate,
    session: SessionDep,
    conn: ConnectionDep,
    storage: StorageDep,
    caller: Annotated[TokenInfo, Depends(authorize)],
) -> SweepOut:
    """Queue a new sweep; workers start on it at once. With ``warm_start_from``, its study
    starts with the finished trials of that sweep (404 if there is none, 422 if its task,
    space or epochs differ), outside the new budget."""
    created_by = None if caller is AUTH_OFF else caller.id
    sweep = sweeps.create_sweep(session, storage, body, created_by=created_by)
    return SweepOut.from_progress(sweeps.sweep_progress(conn, sweep))


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    conn: ConnectionDep,
    status: StatusName | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[StoredInt | None, Query()] = None,
) -> SweepPage:
    """Sweeps, newest first; follow ``next_cursor`` for older ones."""
    page = sweeps.list_sweeps(session, status=status, limit=limit + 1, before_id=cursor)
    more = len(page) > limit
    page = page[:limit]
    return SweepPage(
        items=[SweepOut.from_progress(sweeps.sweep_progress(conn, s)) for s in page],
        next_cursor=str(page[-1].id) if more else None,
    )


@router.get("/{name}", response_model=SweepOut, responses=ERRORS)
def get_sweep(name: SweepName, session: SessionDep, conn: ConnectionDep) -> SweepOut:
    """One sweep: status, budget and trial counts."""
    return SweepOut.from_progress(sweeps.sweep_progress(conn, sweeps.get_sweep(session, name)))


@router.get("/{name}/best", response_model=BestOut, responses=ERRORS)
def best(name: SweepName, session: SessionDep, conn: ConnectionDep) -> BestOut:
    """The best configuration so far (404 until a trial completes), with the baseline beside it.

    Ranked by the mean over fresh seeds once re-evaluation has finished, with
    the runner-up, the p-values against it and the baseline, and ``decided``.
    """
    sweep = sweeps.get_sweep(session, name)
    runs = results.evaluation_runs(conn, sweep)
    answer = results.best_answer(conn, sweep, runs)
    test_run = results.finished_run(runs, Kind.TEST)
    test = None
    if test_run is not None and "test_loss" in test_run.metrics:
        test = TestOut(
            loss=test_run.metrics["test_loss"],
            accuracy=test_run.metrics["test_accuracy"],
            epoch=test_run.metrics["epoch"],
            seed=test_run.seed,
        )
    return BestOut.from_answer(answer, results.evaluation_stage(conn, sweep), test)


@router.get("/{name}/top", response_model=list[ConfigurationOut], responses=ERRORS)
def top(
    name: SweepName,
    session: SessionDep,
    conn: ConnectionDep,
    k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> list[ConfigurationOut]:
    """The ``k`` best configurations so far, best first (by mean over seeds once re-evaluated)."""
    sweep = sweeps.get_sweep(session, name)
    return [
        ConfigurationOut.from_configuration(c) for c in results.top_configurations(conn, sweep, k)
    ]


@router.get(
    "/{name}/chart.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **ERRORS},
)
def chart(name: SweepName, session: SessionDep, conn: ConnectionDep) -> Response:
    """Training and validation loss per epoch: the best configuration vs p=0, λ=0 (PNG)."""
    sweep = sweeps.get_sweep(session, name)
    return Response(charts.sweep_chart(conn, sweep), media_type="image/png")


@router.get("/{name}/importance", response_model=ImportanceOut, responses=ERRORS)
def param_importance(name: SweepName, session: SessionDep, conn: ConnectionDep) -> ImportanceOut:
    """How much dropout and weight decay each matter (409 until 5 trials completed)."""
    sweep = sweeps.get_sweep(session, name)
    found = importance.param_importances(conn, sweep)
    return ImportanceOut(importances=found.importances, trials=found.trials)


@router.patch("/{name}", response_model=SweepOut, responses=ERRORS)
def change_sweep(
    name: SweepName, body: SweepChange, session: SessionDep, conn: ConnectionDep
) -> SweepOut:
    """Change ``priority`` or ``max_concurrent``; workers follow at their next claim."""
    sweep = sweeps.change_scheduling(session, name, body)
    return SweepOut.from_progress(sweeps.sweep_progress(conn, sweep))


def _control(action: str, name: str, session: SessionDep, conn: ConnectionDep) -> SweepOut:
    sweep = sweeps.control_sweep(session, name, action)
    return SweepOut.from_progress(sweeps.sweep_progress(conn, sweep))


@router.post("/{name}/pause", response_model=SweepOut, responses=ERRORS)
def pause(name: SweepName, session: SessionDep, conn: ConnectionDep) -> SweepOut:
    """Stop handing out trials; running trials finish."""
    return _control("pause", name, session, conn)


@router.post("/{name}/resume", response_model=SweepOut, responses=ERRORS)
def resume(name: SweepName, session: SessionDep, conn: ConnectionDep) -> SweepOut:
    """Hand out trials again."""
    return _control("resume", name, session, conn)


@router.post("/{name}/cancel", response_model=SweepOut, responses=ERRORS)
def cancel(name: SweepName, session: SessionDep, conn: ConnectionDep) -> SweepOut:
    """Stop the sweep for good; running trials stop at their next epoch."""
    return _control("cancel", name, session, conn)


@router.post("/{name}/extend", response_model=SweepOut, responses=ERRORS)
def extend(
    name: SweepName,
    body: SweepExtend,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    conn: ConnectionDep,
) -> SweepOut:
    """Add trials to the budget; a completed sweep runs again and its re-evaluation is brought
    up to date (409 on a cancelled or failed sweep)."""
    factory = request.app.state.session_factory
    sweep = sweeps.extend_sweep(settings, factory, session, name, body.n_trials)
    return SweepOut.from_progress(sweeps.sweep_progress(conn, sweep))
