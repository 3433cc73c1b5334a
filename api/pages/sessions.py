"""Browser sessions: a signed cookie naming the API token, and a CSRF token bound to it.

The cookie holds ``<expiry>.<token hash>.<signature>``: the SHA-256 the database keeps, never
the secret, so a stolen cookie is no bearer token. The signature (HMAC-SHA256 with the
server's session key) stops a client from forging one or extending its expiry. The token is
checked again on every request, so revoking or expiring it ends the session at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy.orm import Session, sessionmaker

from sweep.errors import NotAuthenticated
from sweep.service.tokens import TokenInfo, authenticate_digest, hash_secret
from sweep.store.engine import transaction

COOKIE = "sweep_session"
MAX_SESSION = timedelta(hours=12)


def session_key(configured: str | None) -> bytes:
    """The signing key: the configured secret, else a random one for this process."""
    return (configured or secrets.token_urlsafe(32)).encode()


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _cookie_value(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def session_digest(request: Request) -> str | None:
    """The token hash in the request's session cookie, if the cookie is genuine and unexpired."""
    value = _cookie_value(request)
    if not value:
        return None
    expiry, sep, rest = value.partition(".")
    digest, sep2, signature = rest.rpartition(".")
    if not (sep and sep2 and expiry.isdigit()):
        return None
    key: bytes = request.app.state.session_key
    if not hmac.compare_digest(_sign(key, f"{expiry}.{digest}"), signature):
        return None
    if time.time() >= int(expiry):
        return None
    return digest


def session_caller(request: Request) -> TokenInfo:
    """The token behind the session cookie, checked again now; NotAuthenticated without one."""
    digest = session_digest(request)
    if digest is None:
        raise NotAuthenticated("sign in at /login with an API token")
    factory: sessionmaker[Session] = request.app.state.session_factory
    with transaction(factory) as session:
        return authenticate_digest(session, digest)


def start_session(request: Request, response: Response, token: str, info: TokenInfo) -> None:
    """Set the session cookie for ``token``: it ends with the token, or in 12 hours if sooner."""
    now = time.time()
    end = now + MAX_SESSION.total_seconds()
    if info.expires_at is not None:
        end = min(end, info.expires_at.timestamp())
    expiry = int(end)
    value = f"{expiry}.{hash_secret(token)}"
    response.set_cookie(
        COOKIE,
        f"{value}.{_sign(request.app.state.session_key, value)}",
        max_age=max(expiry - int(now), 0),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def end_session(request: Request, response: Response) -> None:
    """Clear the session cookie."""
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def csrf_token(request: Request) -> str:
    """The CSRF token for the request's session: forms that change something must send it back."""
    return _sign(request.app.state.session_key, "csrf:" + (_cookie_value(request) or ""))


def csrf_valid(request: Request, sent: str | None) -> bool:
    """Whether ``sent`` is this session's CSRF token."""
    return hmac.compare_digest(csrf_token(request), sent or "")
