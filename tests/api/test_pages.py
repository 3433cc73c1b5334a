"""The pages: sign-in with a token, the session cookie, roles and CSRF, and the numbers shown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from sweep.config import Settings
from sweep.service.tokens import authenticate, revoke_token
from sweep.store.engine import make_engine, make_session_factory, transaction
from tests.conftest import issue_token
from tests.helpers import SYNTHETIC, run_worker


@pytest.fixture
def browser(settings: Settings) -> Iterator[TestClient]:
    """The app on the test's database, as a browser without a session."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def sign_in(client: TestClient, token: str) -> None:
    response = client.post("/login", data={"token": token, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match[1]


def create_as(client: TestClient, token: str, name: str, n_trials: int, **fields: object) -> None:
    body = {"name": name, **SYNTHETIC, "n_trials": n_trials, **fields}
    response = client.post("/v1/sweeps", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text


def test_login_sets_an_httponly_strict_cookie_that_ends_with_the_token(
    browser: TestClient, settings: Settings
) -> None:
    signed_out = browser.get("/sweeps/x?state=COMPLETE", follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login?next=/sweeps/x%3Fstate%3DCOMPLETE"
    assert 'name="token"' in browser.get("/login").text

    wrong = browser.post("/login", data={"token": "swp_nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "unknown token" in wrong.text
    assert "set-cookie" not in wrong.headers

    token = issue_token(settings.database_url, "reader", expires_in=timedelta(hours=1))
    response = browser.post(
        "/login", data={"token": token, "next": "//evil.example/"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"  # never an open redirect
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("sweep_session=")
    assert token not in cookie  # the token's hash, signed: a stolen cookie is no bearer token
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    max_age = int(re.search(r"Max-Age=(\d+)", cookie)[1])  # type: ignore[index]
    assert 3500 < max_age <= 3600  # the token's hour, not the 12-hour cap
    assert browser.get("/").status_code == 200

    with TestClient(create_app(settings), base_url="https://testserver") as https:
        other = issue_token(settings.database_url, "reader")  # no expiry: the 12-hour cap
        cookie = https.post("/login", data={"token": other}, follow_redirects=False).headers[
            "set-cookie"
        ]
        assert "Secure" in cookie and "Max-Age=43200" in cookie


def test_a_revoked_or_altered_cookie_is_refused(browser: TestClient, settings: Settings) -> None:
    token = issue_token(settings.database_url, "user")
    sign_in(browser, token)
    assert browser.get("/").status_code == 200
    assert browser.get("/v1/sweeps").status_code == 200  # the page's JSON twin, by cookie

    genuine = browser.cookies["sweep_session"]
    expiry, rest = genuine.split(".", 1)
    browser.cookies.set("sweep_session", f"{int(expiry) + 86400}.{rest}")  # a longer life
    assert browser.get("/", follow_redirects=False).status_code == 303
    assert browser.get("/v1/sweeps").status_code == 401
    browser.cookies.set("sweep_session", genuine)

    engine = make_engine(settings.database_url)
    with transaction(make_session_factory(engine)) as session:
        revoke_token(session, authenticate(session, token).id)
    engine.dispose()
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login?next=/"
    assert browser.get("/v1/sweeps").status_code == 401


def test_a_reader_sees_no_controls_and_is_refused_them(
    browser: TestClient, settings: Settings
) -> None:
    user = issue_token(settings.database_url, "user")
    create_as(browser, user, "watched", 2)
    sign_in(browser, issue_token(settings.database_url, "reader"))
    page = browser.get("/sweeps/watched")
    assert page.status_code == 200
    assert "data-action" not in page.text and "Pause</button>" not in page.text
    refused = browser.post(
        "/sweeps/watched/pause", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert refused.status_code == 403 and "user role" in refused.json()["detail"]
    # nor may the cookie change anything through the JSON API
    assert browser.post("/v1/sweeps/watched/pause").status_code == 401
    assert browser.get("/v1/sweeps/watched").json()["status"] == "queued"


def test_a_change_without_the_csrf_token_is_refused(
    browser: TestClient, settings: Settings
) -> None:
    user = issue_token(settings.database_url, "user")
    create_as(browser, user, "guarded", 2)
    sign_in(browser, user)
    page = browser.get("/sweeps/guarded").text
    assert 'data-action="pause"' in page
    for data in ({}, {"csrf": "0" * 64}):
        response = browser.post("/sweeps/guarded/pause", data=data, follow_redirects=False)
        assert response.status_code == 403
    assert browser.get("/v1/sweeps/guarded").json()["status"] == "queued"

    done = browser.post(
        "/sweeps/guarded/pause", data={"csrf": csrf_of(page)}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/sweeps/guarded"
    assert browser.get("/v1/sweeps/guarded").json()["status"] == "paused"
    again = browser.post("/sweeps/guarded/pause", data={"csrf": csrf_of(page)})
    assert "cannot pause" in again.text  # shown on the page, not a bare error

    assert browser.post("/logout", data={}, follow_redirects=False).status_code == 403
    out = browser.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert out.status_code == 303 and 'sweep_session=""' in out.headers["set-cookie"]
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_pages_show_the_numbers_the_json_routes_give(
    browser: TestClient, settings: Settings
) -> None:
    user = issue_token(settings.database_url, "user")
    create_as(browser, user, "shown", 3, reevaluate_top=1, reevaluate_seeds=2, priority=4)
    run_worker(settings)
    sign_in(browser, user)
    sweep = browser.get("/v1/sweeps/shown").json()
    top = browser.get("/v1/sweeps/shown/top").json()
    assert sweep["status"] == "completed" and top

    overview = browser.get("/").text
    done = sweep["trials"].get("COMPLETE", 0) + sweep["trials"].get("PRUNED", 0)
    assert f"{done} / 3" in overview
    assert f"{top[0]['fresh_mean']:.4f}" in overview
    assert 'class="status completed"' in overview

    page = browser.get("/sweeps/shown").text
    for configuration in top:
        if configuration["fresh_std"] is not None:
            fresh = f"{configuration['fresh_mean']:.4f} ± {configuration['fresh_std']:.4f}"
            assert fresh in page
        assert f"<td>{configuration['value']:.4f}</td>" in page  # the selection run, apart
        assert f"<td>{configuration['fresh_seeds']}</td>" in page
    assert 'src="/v1/sweeps/shown/chart.png"' in page
    assert "priority 4, no cap on running trials" in page
    assert browser.get("/v1/sweeps/shown/chart.png").headers["content-type"] == "image/png"
    trials = browser.get("/v1/sweeps/shown/trials").json()["items"]
    assert page.count("<tr><td>") - len(top) == len(trials)
    completed = browser.get("/sweeps/shown?state=COMPLETE").text
    assert "<td>PRUNED</td>" not in completed and "<td>COMPLETE</td>" in completed
    assert browser.get("/static/style.css").status_code == 200
    missing = browser.get("/sweeps/nowhere")
    assert missing.status_code == 404 and "no sweep named &#39;nowhere&#39;" in missing.text
