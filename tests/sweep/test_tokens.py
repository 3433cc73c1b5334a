"""API tokens in the store: issued once, kept only as a hash, expired, revoked, role-checked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from sweep.config import Settings
from sweep.errors import InvalidToken, NotAuthenticated, PermissionDenied, TokenNotFound
from sweep.service.tokens import (
    authenticate,
    check_role,
    create_token,
    hash_secret,
    list_tokens,
    parse_duration,
    revoke_token,
)
from sweep.store.engine import make_engine, transaction
from sweep.store.tables import utcnow


def test_issued_secret_authenticates_and_is_random(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first = create_token(session, "user", name="ci")
        second = create_token(session, "user")
    assert first.secret != second.secret
    assert len(first.secret) >= 43 and first.secret.startswith("swp_")
    assert first.secret not in repr(first)  # a logged IssuedToken does not leak it
    with transaction(factory) as session:
        info = authenticate(session, first.secret)
    assert (info.id, info.role, info.name) == (first.info.id, "user", "ci")
    assert info.last_used_at is None  # the snapshot from before this use
    with transaction(factory) as session:
        assert list_tokens(session)[0].last_used_at is not None
    with transaction(factory) as session, pytest.raises(NotAuthenticated, match="unknown"):
        authenticate(session, first.secret + "x")


def test_expiry_and_revocation(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with transaction(factory) as session:
        short = create_token(session, "reader", expires_in=timedelta(minutes=5), now=now)
        kept = create_token(session, "admin")
    with transaction(factory) as session:
        authenticate(session, short.secret, now=now + timedelta(minutes=4))
    with transaction(factory) as session, pytest.raises(NotAuthenticated, match="expired"):
        authenticate(session, short.secret, now=now + timedelta(minutes=5))
    with transaction(factory) as session:
        revoked = revoke_token(session, kept.info.id)
        again = revoke_token(session, kept.info.id)
    assert revoked.revoked_at == again.revoked_at is not None
    with transaction(factory) as session, pytest.raises(NotAuthenticated, match="revoked"):
        authenticate(session, kept.secret)
    with transaction(factory) as session, pytest.raises(TokenNotFound):
        revoke_token(session, 12345)


def test_roles_are_ordered() -> None:
    check_role("admin", "user")
    check_role("user", "reader")
    check_role("reader", "reader")
    with pytest.raises(PermissionDenied, match="user role"):
        check_role("reader", "user")
    with pytest.raises(PermissionDenied, match="admin role"):
        check_role("user", "admin")


def test_bad_requests_for_tokens(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        with pytest.raises(InvalidToken, match="unknown role"):
            create_token(session, "root")
        with pytest.raises(InvalidToken, match="name"):
            create_token(session, "user", name="no spaces please")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0d", "30", "d", "1y", "-1d", "1.5d", "9999999w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidToken):
        parse_duration(text)


def _every_value(engine: Engine) -> list[str]:
    """Every non-null value of every column of every table in the database, as text."""
    metadata = MetaData()
    metadata.reflect(engine)
    values: list[str] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                values += [str(v) for v in row if v is not None]
    return values


def test_no_raw_token_is_stored_anywhere(
    settings: Settings, factory: sessionmaker[Session]
) -> None:
    with transaction(factory) as session:
        admin = create_token(session, "admin", name="root")
    secrets = [admin.secret]
    headers = {"Authorization": f"Bearer {admin.secret}"}
    with TestClient(create_app(settings), headers=headers) as api:
        for role in ("reader", "user"):
            issued = api.post("/v1/tokens", json={"role": role, "expires_in": "1d"})
            secrets.append(issued.json()["token"])
        user = {"Authorization": f"Bearer {secrets[-1]}"}
        body = {"name": "stored", "task": "synthetic", "epochs": 2, "n_trials": 1}
        assert api.post("/v1/sweeps", json=body, headers=user).status_code == 201
        assert api.get("/v1/sweeps", headers={"Authorization": f"Bearer {secrets[1]}"}).is_success
        api.delete(f"/v1/tokens/{issued.json()['id']}")

    engine = make_engine(settings.database_url)
    values = _every_value(engine)
    engine.dispose()
    assert len(values) > 50  # the sweeps row, Optuna's study, the tokens: the dump saw them
    for secret in secrets:
        body = secret.removeprefix("swp_")
        assert not any(body in value for value in values)
        assert hash_secret(secret) in values  # what is stored instead
