"""API tokens: issue, list, revoke, and check a presented secret. Functions flush, never commit.

A token is shown once, when it is issued; the database keeps only the SHA-256 of
it. SHA-256 (not a slow password hash) is enough because the secret is 32 random
bytes: there is nothing to guess from a dictionary.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sweep.errors import InvalidToken, NotAuthenticated, PermissionDenied, TokenNotFound
from sweep.store.tables import TOKEN_ROLES, ApiToken, utcnow

Role = Literal["reader", "user", "admin"]
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(TOKEN_ROLES)}
PREFIX = "swp_"  # lets secret scanners and people recognise a leaked token
SECRET_BYTES = 32
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9._-]{0,100}$"
# Writing last_used_at on every request would make each GET a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_LIFETIME = timedelta(days=3650)
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class TokenInfo:
    """A token as it can be shown: everything but the secret."""

    id: int
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def active(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class IssuedToken:
    """A new token with its secret, which exists nowhere else once this is dropped."""

    info: TokenInfo
    secret: str = field(repr=False)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a token's secret, as stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s`` or ``2w`` as a timedelta."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidToken(f"expiry {text!r} is not a duration such as 30d, 12h, 90m, 3600s or 2w")
    duration = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    if duration > MAX_LIFETIME:
        raise InvalidToken("expiry must be at most 3650 days; issue a new token instead")
    return duration


def create_token(
    session: Session,
    role: str,
    *,
    name: str = "",
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    """Issue a token with ``role``; the returned secret is the only copy."""
    if role not in ROLE_RANK:
        raise InvalidToken(f"unknown role {role!r}; choose one of: {', '.join(TOKEN_ROLES)}")
    if not re.match(TOKEN_NAME_PATTERN, name):
        raise InvalidToken("a token name is at most 100 letters, digits, '.', '_' or '-'")
    now = now or utcnow()
    secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    row = ApiToken(
        name=name,
        role=role,
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    session.add(row)
    session.flush()
    return IssuedToken(_info(row), secret)


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token, oldest first, without secrets."""
    return [_info(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(session: Session, token_id: int, *, now: datetime | None = None) -> TokenInfo:
    """Revoke a token for good; revoking it again keeps the first time."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise TokenNotFound(f"no API token with id {token_id}; see `sweep token ls`")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return _info(row)


def authenticate(session: Session, secret: str, *, now: datetime | None = None) -> TokenInfo:
    """The token whose secret is ``secret``; NotAuthenticated if unknown, expired or revoked."""
    return authenticate_digest(session, hash_secret(secret), now=now)


def authenticate_digest(session: Session, digest: str, *, now: datetime | None = None) -> TokenInfo:
    """The token whose stored hash is ``digest`` (a browser session keeps the hash, never the
    secret); NotAuthenticated if unknown, expired or revoked."""
    now = now or utcnow()
    row = session.scalar(select(ApiToken).where(ApiToken.secret_hash == digest))
    # The index finds the row by hash; the constant-time compare keeps the check itself
    # from leaking how much of a guess matched.
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        raise NotAuthenticated("unknown token; create one with `sweep token create`")
    info = _info(row)
    if info.revoked_at is not None:
        raise NotAuthenticated("this token was revoked; ask an admin for a new one")
    if info.expires_at is not None and now >= info.expires_at:
        raise NotAuthenticated("this token has expired; ask an admin for a new one")
    if info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.flush()
    return info


def check_role(role: str, needed: str) -> None:
    """PermissionDenied unless ``role`` is at least ``needed`` (reader < user < admin)."""
    if ROLE_RANK.get(role, -1) < ROLE_RANK[needed]:
        raise PermissionDenied(f"this needs the {needed} role; this token is a {role} token")


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; they were written in UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _info(row: ApiToken) -> TokenInfo:
    created = _aware(row.created_at)
    assert created is not None
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=created,
        expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at),
        last_used_at=_aware(row.last_used_at),
    )
