"""optuna-dashboard at /dashboard/ in the API's server: the same sign-in and roles."""

from __future__ import annotations

import optuna
from fastapi.testclient import TestClient

from sweep.config import Settings
from tests.conftest import issue_token
from tests.helpers import create


def _study_ids(client: TestClient) -> dict[str, int]:
    listed = client.get("/api/studies")
    assert listed.status_code == 200, listed.text
    return {s["study_name"]: s["study_id"] for s in listed.json()["study_summaries"]}


def test_the_dashboard_needs_sign_in_and_serves_its_page_and_code(
    client: TestClient, settings: Settings
) -> None:
    create(client, "dashed", n_trials=2)
    with TestClient(client.app) as browser:
        signed_out = browser.get("/dashboard/", follow_redirects=False)
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/login?next=/dashboard/"
        assert browser.get("/api/studies").status_code == 401  # an API call: no redirect
        browser.post("/login", data={"token": issue_token(settings.database_url, "reader")})
        page = browser.get("/dashboard/")
        assert page.status_code == 200 and "/static/bundle.js" in page.text
        code = browser.get("/static/bundle.js")
        assert code.status_code == 200 and len(code.content) > 100_000
        assert browser.get("/static/style.css").status_code == 200  # the pages' own assets
        assert set(_study_ids(browser)) == {"dashed", "dashed.eval"}


def test_a_reader_only_reads_and_nobody_deletes_or_renames_a_sweeps_study(
    client: TestClient, settings: Settings
) -> None:
    create(client, "kept", n_trials=2)
    other = optuna.create_study(study_name="scratch", storage=settings.database_url)
    ids = _study_ids(client)  # the client is an admin, by bearer token
    reader = {"Authorization": f"Bearer {issue_token(settings.database_url, 'reader')}"}
    user = {"Authorization": f"Bearer {issue_token(settings.database_url, 'user')}"}

    assert client.get(f"/api/studies/{ids['kept']}", headers=reader).status_code == 200
    note = {"version": 1, "body": "tried by hand"}
    for headers in (reader, user):
        denied = client.put(f"/api/studies/{ids['kept']}/note", json=note, headers=headers)
        assert denied.status_code == 403 and "admin" in denied.json()["detail"]
        gone = client.delete(f"/api/studies/{other._study_id}", headers=headers)
        assert gone.status_code == 403
    assert client.put(f"/api/studies/{ids['kept']}/note", json=note).status_code == 204

    for name in ("kept", "kept.eval"):
        refused = client.delete(f"/api/studies/{ids[name]}")
        assert refused.status_code == 403
        assert "backs sweep 'kept'" in refused.json()["detail"]
        renamed = client.post(f"/api/studies/{ids[name]}/rename", json={"study_name": "x"})
        assert renamed.status_code == 403
    assert set(_study_ids(client)) == {"kept", "kept.eval", "scratch"}
    assert client.get("/v1/sweeps/kept").status_code == 200

    # a study that backs no sweep is the admin's to delete
    assert client.delete(f"/api/studies/{other._study_id}").status_code == 204
    assert set(_study_ids(client)) == {"kept", "kept.eval"}
