"""Priority and max_concurrent through the API: set at creation, shown, changed by PATCH."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sweep.config import Settings
from tests.conftest import issue_token
from tests.helpers import create


def test_create_shows_priority_cap_and_the_creating_token(client: TestClient) -> None:
    body = create(client, "fair", priority=5, max_concurrent=2)
    assert (body["priority"], body["max_concurrent"]) == (5, 2)
    (token,) = client.get("/v1/tokens").json()
    assert body["created_by"] == token["id"]
    plain = create(client, "plain")
    assert (plain["priority"], plain["max_concurrent"]) == (0, None)
    listed = {s["name"]: s for s in client.get("/v1/sweeps").json()["items"]}
    assert listed["fair"]["max_concurrent"] == 2 and listed["plain"]["priority"] == 0


def test_patch_changes_only_the_fields_given(client: TestClient) -> None:
    create(client, "fair", priority=1, max_concurrent=2)
    changed = client.patch("/v1/sweeps/fair", json={"priority": 10})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["priority"], changed.json()["max_concurrent"]) == (10, 2)
    uncapped = client.patch("/v1/sweeps/fair", json={"max_concurrent": None})
    assert (uncapped.json()["priority"], uncapped.json()["max_concurrent"]) == (10, None)
    both = client.patch("/v1/sweeps/fair", json={"priority": -3, "max_concurrent": 7})
    assert (both.json()["priority"], both.json()["max_concurrent"]) == (-3, 7)
    shown = client.get("/v1/sweeps/fair").json()
    assert (shown["priority"], shown["max_concurrent"]) == (-3, 7)


BAD_CHANGES = [
    ({"n_trials": 5}, "n_trials"),
    ({"priority": 1, "name": "other"}, "name"),
    ({}, "priority"),
    ({"priority": None}, "priority"),
    ({"priority": "high"}, "priority"),
    ({"priority": 1.5}, "priority"),
    ({"max_concurrent": 0}, "max_concurrent"),
    ({"max_concurrent": "2"}, "max_concurrent"),
]


def test_patch_refuses_anything_else(client: TestClient) -> None:
    create(client, "fair")
    for body, field in BAD_CHANGES:
        response = client.patch("/v1/sweeps/fair", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text, (body, response.text)
    assert client.get("/v1/sweeps/fair").json()["priority"] == 0


def test_create_refuses_a_cap_below_one(client: TestClient) -> None:
    response = client.post("/v1/sweeps", json={"name": "x", "max_concurrent": 0})
    assert response.status_code == 422 and "max_concurrent" in response.text


def test_patch_needs_the_user_role_a_sweep_and_an_unfinished_one(
    client: TestClient, settings: Settings
) -> None:
    create(client, "fair")
    reader = {"Authorization": f"Bearer {issue_token(settings.database_url, 'reader')}"}
    assert client.patch("/v1/sweeps/fair", json={"priority": 1}, headers=reader).status_code == 403
    assert client.patch("/v1/sweeps/none", json={"priority": 1}).status_code == 404
    assert client.post("/v1/sweeps/fair/cancel").status_code == 200
    finished = client.patch("/v1/sweeps/fair", json={"priority": 1})
    assert finished.status_code == 409 and "cancelled" in finished.text
