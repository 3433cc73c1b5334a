"""Request dependencies: settings, the session that owns the request's transaction, storage,
and who is calling (bearer token, role, rate limit)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from optuna.storages import RDBStorage
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from api.pages.sessions import session_caller, session_digest
from api.ratelimit import RequestLimiter
from sweep.config import Settings
from sweep.errors import NotAuthenticated
from sweep.service.tokens import TokenInfo, authenticate, check_role
from sweep.store.engine import transaction
from sweep.store.optuna_storage import storage_for
from sweep.store.tables import utcnow

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
AUTH_OFF = TokenInfo(
    id=0, name="auth off", role="admin", created_at=utcnow(), expires_at=None,
    revoked_at=None, last_used_at=None,
)  # fmt: skip

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `sweep token create` (or POST /v1/tokens), sent as "
    "`Authorization: Bearer <token>`.",
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_storage(request: Request) -> RDBStorage:
    """Optuna's storage, opened on first use (the database may be down when the API starts)."""
    return storage_for(request.app.state.settings)


def get_session(request: Request) -> Iterator[Session]:
    """A session committed when the endpoint returns, before the response is sent."""
    with transaction(request.app.state.session_factory) as session:
        yield session


def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TokenInfo:
    """The token the request carries (any role); with SWEEP_AUTH=false, an admin stand-in."""
    settings: Settings = request.app.state.settings
    if not settings.auth:
        return AUTH_OFF
    if credentials is None:
        # A signed-in browser may read the JSON twins of its pages (polling, the chart); it
        # changes things only through the pages' forms, which carry a CSRF token.
        if request.method in SAFE_METHODS and session_digest(request) is not None:
            return session_caller(request)
        raise NotAuthenticated()
    # Its own short transaction: recording the last use must not depend on the request's outcome.
    with transaction(request.app.state.session_factory) as session:
        return authenticate(session, credentials.credentials)


CallerDep = Annotated[TokenInfo, Depends(get_caller)]


def count_change(request: Request, caller: TokenInfo) -> None:
    """Count a change against the caller's rate limit (429 past it)."""
    limiter: RequestLimiter = request.app.state.limiter
    client = request.client.host if request.client else "unknown"
    limiter.hit(f"token:{caller.id}" if caller is not AUTH_OFF else f"client:{client}")


def authorize(request: Request, caller: CallerDep) -> TokenInfo:
    """Readers may read; changing anything needs the user role (and counts against the limit)."""
    if request.method in SAFE_METHODS:
        check_role(caller.role, "reader")
        return caller
    check_role(caller.role, "user")
    count_change(request, caller)
    return caller


def authorize_admin(request: Request, caller: CallerDep) -> TokenInfo:
    """Managing tokens needs the admin role."""
    check_role(caller.role, "admin")
    if request.method not in SAFE_METHODS:
        count_change(request, caller)
    return caller


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StorageDep = Annotated[RDBStorage, Depends(get_storage)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_connection(session: SessionDep) -> Connection:
    """The connection of the request's session: every read of a request goes through it, so a
    request holds one pooled connection at most and cannot wait on the pool for a second."""
    return session.connection()


ConnectionDep = Annotated[Connection, Depends(get_connection)]
