"""Who may call the API: bearer tokens, roles, expiry, revocation, rate limits, CORS, body size."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from sweep.config import Settings
from sweep.store.tables import utcnow
from tests.conftest import issue_token

SYNTHETIC = {"task": "synthetic", "epochs": 2, "n_trials": 1}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[TestClient]:
    """The API on the test's database, calling without a token (tests add their own)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_v1_needs_a_token_and_health_does_not(anonymous: TestClient) -> None:
    for method, path in [
        ("GET", "/v1/sweeps"),
        ("POST", "/v1/sweeps"),
        ("GET", "/v1/sweeps/x/best"),
        ("GET", "/v1/sweeps/x/trials"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens"),
        ("DELETE", "/v1/tokens/1"),
    ]:
        response = anonymous.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in response.json()["detail"]
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    assert anonymous.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Bearer swp_not-a-token-that-exists",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "swp_no_scheme",
        "Bearer " + "x" * 5000,
    ],
)
def test_unknown_or_malformed_tokens_are_401_without_echo(
    anonymous: TestClient, header: str
) -> None:
    response = anonymous.get("/v1/sweeps", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    secret = header.split(" ", 1)[-1]
    if secret.strip():
        assert secret not in response.text


def test_roles_reader_reads_user_controls_admin_manages_tokens(
    anonymous: TestClient, settings: Settings
) -> None:
    reader = bearer(issue_token(settings.database_url, "reader"))
    user = bearer(issue_token(settings.database_url, "user"))
    admin = bearer(issue_token(settings.database_url, "admin"))

    assert anonymous.get("/v1/sweeps", headers=reader).status_code == 200
    denied = anonymous.post("/v1/sweeps", json={"name": "r", **SYNTHETIC}, headers=reader)
    assert denied.status_code == 403
    assert "user role" in denied.json()["detail"]
    assert "www-authenticate" not in denied.headers

    created = anonymous.post("/v1/sweeps", json={"name": "u", **SYNTHETIC}, headers=user)
    assert created.status_code == 201
    assert anonymous.post("/v1/sweeps/u/pause", headers=reader).status_code == 403
    assert anonymous.post("/v1/sweeps/u/pause", headers=user).json()["status"] == "paused"
    assert anonymous.get("/v1/sweeps/u", headers=reader).json()["status"] == "paused"

    for headers in (reader, user):
        assert anonymous.get("/v1/tokens", headers=headers).status_code == 403
        issued = anonymous.post("/v1/tokens", json={"role": "admin"}, headers=headers)
        assert issued.status_code == 403
    assert anonymous.get("/v1/tokens", headers=admin).status_code == 200
    # an admin may do what a user may
    assert anonymous.post("/v1/sweeps/u/cancel", headers=admin).status_code == 200


def test_admin_issues_lists_and_revokes_tokens(anonymous: TestClient, settings: Settings) -> None:
    admin = bearer(issue_token(settings.database_url, "admin", name="root"))
    response = anonymous.post(
        "/v1/tokens", json={"role": "reader", "name": "dash", "expires_in": "30d"}, headers=admin
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    secret = created["token"]
    assert secret.startswith("swp_") and len(secret) >= 4 + 43
    assert created["role"] == "reader" and created["active"] is True
    lifetime = created["expires_at"][:10]
    assert lifetime == (utcnow() + timedelta(days=30)).date().isoformat()

    assert anonymous.get("/v1/sweeps", headers=bearer(secret)).status_code == 200
    listed = anonymous.get("/v1/tokens", headers=admin)
    assert secret not in listed.text
    dash = next(t for t in listed.json() if t["name"] == "dash")
    assert dash["last_used_at"] is not None  # the GET above was recorded
    assert "token" not in dash

    revoked = anonymous.delete(f"/v1/tokens/{created['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"]
    after = anonymous.get("/v1/sweeps", headers=bearer(secret))
    assert after.status_code == 401
    assert "revoked" in after.json()["detail"]
    assert anonymous.delete("/v1/tokens/9999", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "root"}, "role"),
        ({}, "role"),
        ({"role": "user", "expires_in": "5y"}, "expires"),
        ({"role": "user", "expires_in": "99999w"}, "3650 days"),
        ({"role": "user", "name": "a/b"}, "name"),
        ({"role": "user", "secret": "mine"}, "secret"),
    ],
)
def test_bad_token_requests_are_422(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    response = client.post("/v1/tokens", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_expired_token_is_401(anonymous: TestClient, settings: Settings) -> None:
    secret = issue_token(
        settings.database_url,
        "user",
        expires_in=timedelta(minutes=1),
        now=utcnow() - timedelta(hours=1),
    )
    response = anonymous.get("/v1/sweeps", headers=bearer(secret))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_mutating_requests_are_rate_limited_per_token(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit": "3/minute"})
    first = bearer(issue_token(settings.database_url, "user"))
    second = bearer(issue_token(settings.database_url, "user"))
    with TestClient(create_app(limited)) as api:
        for i in range(3):
            body = {"name": f"rl{i}", **SYNTHETIC}
            assert api.post("/v1/sweeps", json=body, headers=first).status_code == 201
        refused = api.post("/v1/sweeps", json={"name": "rl3", **SYNTHETIC}, headers=first)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "rate limit" in refused.json()["detail"]
        # reads are not limited, and another token has its own budget
        assert api.get("/v1/sweeps", headers=first).status_code == 200
        other = api.post("/v1/sweeps", json={"name": "rl4", **SYNTHETIC}, headers=second)
        assert other.status_code == 201
        assert api.get("/v1/sweeps/rl3", headers=first).status_code == 404  # never created


def test_cors_is_off_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/v1/sweeps",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get("/v1/sweeps", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_only_the_configured_origins(settings: Settings) -> None:
    with_cors = settings.model_copy(update={"cors_origins": ["https://ui.example"]})
    token = bearer(issue_token(settings.database_url, "reader"))
    with TestClient(create_app(with_cors)) as api:
        ok = api.options(
            "/v1/sweeps",
            headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "GET"},
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        got = api.get("/v1/sweeps", headers={"Origin": "https://ui.example", **token})
        assert got.headers["access-control-allow-origin"] == "https://ui.example"
        other = api.options(
            "/v1/sweeps",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


def test_bodies_over_64_kib_are_413(client: TestClient) -> None:
    big = b'{"name": "big", "description": "' + b"x" * (70 * 1024) + b'"}'
    response = client.post("/v1/sweeps", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "Too Large" in response.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield b'{"name": "big", "description": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    chunked = client.post(
        "/v1/sweeps", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert "Too Large" in chunked.text
    assert client.get("/v1/sweeps/big").status_code == 404
    # just under the limit is fine (and then a 422 for the over-long description)
    near = b'{"name": "near", "description": "' + b"x" * (60 * 1024) + b'"}'
    assert (
        client.post(
            "/v1/sweeps", content=near, headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


def test_auth_off_needs_no_token(settings: Settings) -> None:
    open_settings = settings.model_copy(update={"auth": False})
    with TestClient(create_app(open_settings)) as api:
        assert api.get("/v1/sweeps").status_code == 200
        assert api.post("/v1/sweeps", json={"name": "open", **SYNTHETIC}).status_code == 201
