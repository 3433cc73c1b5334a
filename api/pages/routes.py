"""Pages: sign-in, the sweep list and a sweep's page, over the same data as the JSON routes.

Each page calls the /v1 route functions it mirrors, so what a browser shows a script can read
from the page's JSON twin (linked at the foot of every page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import AUTH_OFF, ConnectionDep, SessionDep, count_change
from api.pages.sessions import (
    csrf_token,
    csrf_valid,
    end_session,
    session_caller,
    start_session,
)
from api.routes import sweeps as sweep_routes
from api.routes import trials as trial_routes
from api.routes.sweeps import SweepName
from api.routes.trials import TrialState
from sweep.definition.status import TRANSITIONS, UNFINISHED_STATUSES
from sweep.errors import (
    InvalidSweep,
    InvalidTransition,
    NoResultYet,
    NotAuthenticated,
    NotEnoughTrials,
    NotFound,
)
from sweep.service import sweeps
from sweep.service.enqueue import enqueue_configuration
from sweep.service.tokens import ROLE_RANK, TokenInfo, authenticate, check_role
from sweep.store.engine import transaction

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
STATES: tuple[str, ...] = get_args(TrialState)
MAX_FORM_BYTES = 8192
MAX_EXTEND = 10_000  # as SweepExtend allows
EXTENDABLE = ("queued", "running", "paused", "completed")


def _viewer(request: Request) -> TokenInfo | None:
    """Who the browser is signed in as (re-checked now), or None."""
    if not request.app.state.settings.auth:
        return AUTH_OFF
    try:
        return session_caller(request)
    except NotAuthenticated:
        return None


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def _local(target: str | None) -> str:
    # Only a path on this server: never an open redirect to another site.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _render(
    request: Request, name: str, viewer: TokenInfo | None, status: int = 200, **context: Any
) -> HTMLResponse:
    can_control = viewer is not None and ROLE_RANK[viewer.role] >= ROLE_RANK["user"]
    return templates.TemplateResponse(
        request,
        name,
        {
            "viewer": viewer,
            "auth": request.app.state.settings.auth,
            "can_control": can_control,
            "csrf": csrf_token(request),
            **context,
        },
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form's fields (the first value of each)."""
    body = await request.body()
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=10)
    return {key: values[0] for key, values in fields.items()}


FormDep = Annotated[dict[str, str], Depends(_form)]


def _form_params(form: dict[str, str]) -> dict[str, object]:
    """The ``param.<name>`` fields of the enqueue form, as numbers where they are numbers."""
    params: dict[str, object] = {}
    for key, value in form.items():
        if key.startswith("param."):
            try:
                params[key.removeprefix("param.")] = float(value)
            except ValueError:
                params[key.removeprefix("param.")] = value  # named in the 422's message
    return params


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form: paste an API token."""
    if not request.app.state.settings.auth:
        return RedirectResponse(_local(next), status_code=303)
    return _render(request, "login.html", None, next=_local(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, form: FormDep) -> Response:
    """Check the token and start a session; the cookie ends with the token or in 12 hours."""
    target = _local(form.get("next"))
    token = form.get("token", "").strip()
    try:
        with transaction(request.app.state.session_factory) as session:
            info = authenticate(session, token)
    except NotAuthenticated as exc:
        return _render(request, "login.html", None, 401, next=target, error=exc.message)
    response = RedirectResponse(target, status_code=303)
    start_session(request, response, token, info)
    return response


@router.post("/logout")
def logout(request: Request, form: FormDep) -> Response:
    """End the session (the token itself stays valid)."""
    if not csrf_valid(request, form.get("csrf")):
        return Response("missing or wrong CSRF token; reload the page", status_code=403)
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response)
    return response


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, session: SessionDep, conn: ConnectionDep) -> Response:
    """Every sweep (newest first): status, progress, best value, when it ran. JSON: /v1/sweeps."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    page = sweep_routes.list_sweeps(session, conn, status=None, limit=50, cursor=None)
    best = {s.name: sweep_routes.top(s.name, session, conn, k=1) for s in page.items}
    return _render(request, "index.html", viewer, sweeps=page.items, best=best)


@router.get("/sweeps/{name}", response_class=HTMLResponse)
def sweep_page(
    request: Request,
    name: SweepName,
    session: SessionDep,
    conn: ConnectionDep,
    state: str | None = None,
    notice: str | None = None,
) -> Response:
    """A sweep: progress, top configurations, chart, importance, trials. JSON: /v1/sweeps/{name}."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    state = state if state in STATES else None
    try:
        sweep = sweep_routes.get_sweep(name, session, conn)
    except NotFound as exc:
        return _render(request, "missing.html", viewer, 404, message=exc.message)
    try:
        best = sweep_routes.best(name, session, conn)
    except NoResultYet:
        best = None
    try:
        importance = sweep_routes.param_importance(name, session, conn)
    except NotEnoughTrials:
        importance = None
    trials = trial_routes.list_trials(name, session, conn, state=state, limit=200, cursor=None)  # type: ignore[arg-type]
    actions = [a for a, (sources, _) in TRANSITIONS.items() if sweep.status in sources]
    if sweep.status in EXTENDABLE:
        actions.append("extend")
    if sweep.status in UNFINISHED_STATUSES:
        actions.append("enqueue")
    return _render(
        request,
        "sweep.html",
        viewer,
        sweep=sweep,
        best=best,
        top=sweep_routes.top(name, session, conn, k=5),
        importance=importance,
        trials=trials,
        state=state,
        states=STATES,
        actions=actions,
        notice=notice,
    )


@router.post("/sweeps/{name}/{action}")
def control(
    request: Request, name: SweepName, action: str, session: SessionDep, form: FormDep
) -> Response:
    """Pause, resume, cancel, extend or enqueue from the page: the user role and the form's
    CSRF token."""
    viewer = _viewer(request)
    if viewer is None:
        raise NotAuthenticated("sign in at /login with an API token")
    if not csrf_valid(request, form.get("csrf")):
        return Response("missing or wrong CSRF token; reload the page", status_code=403)
    check_role(viewer.role, "user")
    count_change(request, viewer)
    target = f"/sweeps/{quote(name)}"
    try:
        if action == "extend":
            count = form.get("n_trials", "")
            if not count.isdigit() or not 1 <= int(count) <= MAX_EXTEND:
                raise InvalidTransition(f"extend by 1 to {MAX_EXTEND} trials, not {count!r}")
            settings = request.app.state.settings
            factory = request.app.state.session_factory
            sweeps.extend_sweep(settings, factory, session, name, int(count))
        elif action == "enqueue":
            settings = request.app.state.settings
            factory = request.app.state.session_factory
            enqueue_configuration(settings, factory, name, _form_params(form))
        elif action in TRANSITIONS:
            sweeps.control_sweep(session, name, action)
        else:
            return Response(f"no action {action!r}: pause, resume, cancel, extend or enqueue", 404)
    except (InvalidTransition, InvalidSweep) as exc:
        return RedirectResponse(f"{target}?notice={quote(exc.message)}", status_code=303)
    return RedirectResponse(target, status_code=303)
