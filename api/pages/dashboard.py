"""optuna-dashboard inside the API's server, behind the same sign-in and roles.

Its WSGI app runs on the sweep database's Optuna storage through a2wsgi. Its page is served at
``/dashboard/``; its browser code asks for ``/api/...`` and ``/static/bundle.js`` at the root
of the server, so those paths are routed to it too. Every request is checked first: a reader
may use every reading route, only an admin the changing ones (notes, attributes, renames,
deletes, ...), and nobody may delete or rename a study that backs a sweep.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import AUTH_OFF, SAFE_METHODS, count_change
from api.pages.sessions import session_caller
from sweep.definition.evaluation import evaluation_study_name
from sweep.errors import NotAuthenticated, PermissionDenied, RateLimited
from sweep.service.tokens import TokenInfo, authenticate, check_role
from sweep.store import queries
from sweep.store.engine import transaction
from sweep.store.optuna_storage import storage_for
from sweep.store.tables import Sweep

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# The dashboard's own routes that delete or rename a whole study.
_STUDY_CHANGE = re.compile(r"^/api/studies/(\d+)(/rename)?/?$")


def _caller(request: Request) -> TokenInfo:
    """Who sends the request: a bearer token, else the browser's session cookie."""
    if not request.app.state.settings.auth:
        return AUTH_OFF
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret:
        with transaction(request.app.state.session_factory) as session:
            return authenticate(session, secret.strip())
    return session_caller(request)


def _sweep_of_study(factory: sessionmaker[Session], study_id: int) -> str | None:
    """The sweep the study ``study_id`` backs (its own study or its evaluation study), or None."""
    with transaction(factory) as session:
        name = queries.study_name(session.connection(), study_id)
        if name is None:
            return None
        owners = {name, name.removesuffix(".eval")}
        for sweep in session.scalars(select(Sweep.name).where(Sweep.name.in_(owners))):
            if name in (sweep, evaluation_study_name(sweep)):
                return str(sweep)
        return None


def _check(request: Request) -> Response | None:
    """None when the request may go on to the dashboard; else the refusal to send."""
    method = request.method
    try:
        caller = _caller(request)
        check_role(caller.role, "reader" if method in SAFE_METHODS else "admin")
        if method not in SAFE_METHODS:
            count_change(request, caller)
    except NotAuthenticated as exc:
        if method in SAFE_METHODS and request.url.path.startswith("/dashboard"):
            target = quote(request.url.path)
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return JSONResponse({"detail": exc.message}, status_code=401)
    except PermissionDenied as exc:
        return JSONResponse({"detail": exc.message}, status_code=403)
    except RateLimited as exc:
        return JSONResponse(
            {"detail": exc.message}, status_code=429, headers={"Retry-After": str(exc.retry_after)}
        )
    found = _STUDY_CHANGE.match(request.url.path)
    deleting = method == "DELETE" and found is not None and found.group(2) is None
    renaming = method == "POST" and found is not None and found.group(2) is not None
    if deleting or renaming:
        sweep = _sweep_of_study(request.app.state.session_factory, int(found.group(1)))  # type: ignore[union-attr]
        if sweep is not None:
            what = "delete" if deleting else "rename"
            return JSONResponse(
                {
                    "detail": f"cannot {what} this study: it backs sweep {sweep!r}; "
                    f"cancel the sweep through the API instead (POST /v1/sweeps/{sweep}/cancel)"
                },
                status_code=403,
            )
    return None


class DashboardApp:
    """The dashboard's WSGI app, opened on first use (the database may be down at start)."""

    def __init__(self) -> None:
        self._wsgi: ASGIApp | None = None

    def _app(self, scope: Scope) -> ASGIApp:
        if self._wsgi is None:
            import optuna_dashboard

            settings = scope["app"].state.settings
            wsgi = optuna_dashboard.wsgi(storage_for(settings))
            self._wsgi = cast(ASGIApp, WSGIMiddleware(wsgi))
        return self._wsgi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        refusal = await run_in_threadpool(_check, request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        # The dashboard routes on the full path (/dashboard/..., /api/...), not one under a mount.
        inner: dict[str, Any] = {**scope, "root_path": ""}
        await self._app(scope)(inner, receive, send)


def mount_dashboard(app: FastAPI) -> None:
    """Serve optuna-dashboard at /dashboard/, with the paths its page asks for."""
    dashboard = DashboardApp()
    app.router.routes.extend(
        [
            Route("/static/bundle.js", dashboard, methods=["GET", "HEAD"]),
            Mount("/dashboard", dashboard),
            Mount("/api", dashboard),
        ]
    )
