"""Every kind of bad input gets a 4xx that names the field and the rule, never a 500."""
# ruff: noqa: E501  (a table of cases reads best one case per line)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from sweep.store.engine import make_engine
from sweep.store.migrations import upgrade
from tests.conftest import fast_settings, issue_token

JSON = "application/json"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One API on one SQLite file for the whole table: validation happens before the store."""
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('bad')) / 'sweep.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = fast_settings(url).model_copy(update={"rate_limit": "off"})
    headers = {"Authorization": f"Bearer {issue_token(url)}"}
    with TestClient(create_app(settings), headers=headers) as test_client:
        yield test_client


def body(fields: str) -> str:
    """A create body with a valid name and the synthetic task, plus ``fields`` (raw JSON)."""
    return '{"name": "bad", "task": "synthetic", ' + fields + "}"


# (what, raw body, content type, status, text the answer must contain)
CREATE_CASES: list[tuple[str, str | bytes, str | None, int, str]] = [
    ("dropout above 1", body('"space": {"dropout": {"low": 0.2, "high": 1.5}}'), JSON, 422, "[0, 1)"),
    ("dropout of 1", body('"space": {"dropout": {"low": 0.2, "high": 1}}'), JSON, 422, "[0, 1)"),
    ("dropout below 0", body('"space": {"dropout": {"low": -0.1, "high": 0.5}}'), JSON, 422, "[0, 1)"),
    ("negative weight decay", body('"space": {"weight_decay": {"low": -1e-3, "high": 1e-2}}'), JSON, 422, "≥ 0"),
    ("negative decay choice", body('"space": {"weight_decay": {"choices": [1e-3, -1]}}'), JSON, 422, "≥ 0"),
    ("low above high", body('"space": {"dropout": {"low": 0.5, "high": 0.2}}'), JSON, 422, "must not be greater"),
    ("log range from 0", body('"space": {"weight_decay": {"low": 0, "high": 1e-2, "log": true}}'), JSON, 422, "low > 0"),
    ("raw NaN", body('"space": {"dropout": {"low": NaN, "high": 0.5}}'), JSON, 422, "finite"),
    ("raw Infinity", body('"space": {"weight_decay": {"low": 1e-5, "high": Infinity}}'), JSON, 422, "finite"),
    ("raw -Infinity", body('"space": {"dropout": {"low": -Infinity, "high": 0.5}}'), JSON, 422, "finite"),
    ("1e309 overflows to inf", body('"space": {"dropout": {"low": 0.2, "high": 1e309}}'), JSON, 422, "finite"),
    ("NaN in choices", body('"space": {"weight_decay": {"choices": [NaN]}}'), JSON, 422, "finite"),
    ("NaN in task_options", body('"task_options": {"epoch_seconds": NaN}'), JSON, 422, "task_options"),
    ("Infinity deep in task_options", '{"name": "bad", "task_options": {"lr": [Infinity]}}', JSON, 422, "task_options.lr[0] must be a finite number"),
    ("NaN n_trials", body('"n_trials": NaN'), JSON, 422, "n_trials"),
    ("1e309 n_trials", body('"n_trials": 1e309'), JSON, 422, "n_trials"),
    ("NaN seed", body('"seed": NaN'), JSON, 422, "seed"),
    ("unknown task", '{"name": "bad", "task": "no-such-task"}', JSON, 422, "unknown task"),
    ("unknown parameter", body('"space": {"momentum": {"low": 0.1, "high": 0.9}}'), JSON, 422, "momentum"),
    ("unknown field", body('"learning_rate": 0.1'), JSON, 422, "learning_rate"),
    ("unknown sampler", body('"sampler": "annealing"'), JSON, 422, "sampler"),
    ("unknown pruner", body('"pruner": "sometimes"'), JSON, 422, "pruner"),
    ("unknown task option", body('"task_options": {"bogus": 1}'), JSON, 422, "bogus"),
    ("n_trials 0", body('"n_trials": 0'), JSON, 422, "n_trials"),
    ("n_trials 10001", body('"n_trials": 10001'), JSON, 422, "n_trials"),
    ("epochs 0", body('"epochs": 0'), JSON, 422, "epochs"),
    ("epochs 10001", body('"epochs": 10001'), JSON, 422, "epochs"),
    ("seed above 2^31-1", body('"seed": 2147483648'), JSON, 422, "seed"),
    ("name with NUL", '{"name": "a\\u0000b"}', JSON, 422, "name"),
    ("name of 513 characters", '{"name": "' + "x" * 513 + '"}', JSON, 422, "name"),
    ("name of 101 characters", '{"name": "' + "x" * 101 + '"}', JSON, 422, "name"),
    ("name ../x", '{"name": "../x"}', JSON, 422, "name"),
    ("empty name", '{"name": ""}', JSON, 422, "name"),
    ("name with a space", '{"name": "a b"}', JSON, 422, "name"),
    ("non-ASCII name", '{"name": "süß"}', JSON, 422, "name"),
    ("name missing", '{"task": "synthetic"}', JSON, 422, "name"),
    ("name a number", '{"name": 7}', JSON, 422, "name"),
    ("n_trials as a string", body('"n_trials": "5"'), JSON, 422, "n_trials"),
    ("n_trials as a boolean", body('"n_trials": true'), JSON, 422, "n_trials"),
    ("n_trials fractional", body('"n_trials": 5.5'), JSON, 422, "n_trials"),
    ("low as a string", body('"space": {"dropout": {"low": "0.2", "high": 0.5}}'), JSON, 422, "low"),
    ("log as a string", body('"space": {"weight_decay": {"low": 1e-5, "high": 1e-2, "log": "yes"}}'), JSON, 422, "log"),
    ("space as a list", body('"space": [0.2, 0.5]'), JSON, 422, "space"),
    ("task_options as a list", body('"task_options": [1]'), JSON, 422, "task_options"),
    ("description of 2001 characters", body('"description": "' + "d" * 2001 + '"'), JSON, 422, "description"),
    ("body a JSON array", "[1, 2]", JSON, 422, "body"),
    ("body JSON null", "null", JSON, 422, "body"),
    ("body not JSON", "name=bad&task=synthetic", JSON, 422, "JSON decode error"),
    ("body truncated JSON", '{"name": "bad"', JSON, 422, "JSON decode error"),
    ("body nested 5000 deep", '{"name": "bad", "task_options": {"x": ' + "[" * 5000 + "]" * 5000 + "}}", JSON, 422, "not valid JSON"),
    ("body not UTF-8", b'{"name": "\xff\xfe"}', JSON, 422, "not valid JSON"),
    ("a 5000-digit number", body('"seed": 1' + "0" * 5000), JSON, 422, "not valid JSON"),
    ("form content type", '{"name": "bad"}', "application/x-www-form-urlencoded", 422, "body"),
    ("no content type", '{"name": "bad"}', None, 422, "body"),
    ("empty body", "", JSON, 422, "body"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "text"),
    [case[1:] for case in CREATE_CASES],
    ids=[case[0] for case in CREATE_CASES],
)
def test_bad_create_bodies(
    api: TestClient, raw: str | bytes, content_type: str | None, status: int, text: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = api.post("/v1/sweeps", content=raw, headers=headers)
    assert response.status_code == status, response.text
    assert text in response.text
    assert api.get("/v1/sweeps/bad").status_code == 404  # nothing was created


# (what, path, status, text)
PATH_CASES = [
    ("unknown sweep", "/v1/sweeps/nope", 404, "no sweep named 'nope'"),
    ("unknown sweep's best", "/v1/sweeps/nope/best", 404, "no sweep"),
    ("unknown sweep's trials", "/v1/sweeps/nope/trials", 404, "no sweep"),
    ("NUL in the name", "/v1/sweeps/a%00b", 422, "name"),
    ("513-character name", "/v1/sweeps/" + "x" * 513, 422, "name"),
    ("dot-dot name", "/v1/sweeps/..%2Fx", 404, "Not Found"),  # no route matches
    ("limit 0", "/v1/sweeps?limit=0", 422, "limit"),
    ("limit a word", "/v1/sweeps?limit=many", 422, "limit"),
    ("cursor not a number", "/v1/sweeps?cursor=abc", 422, "cursor"),
    ("unknown status", "/v1/sweeps?status=sleeping", 422, "status"),
    ("k 0", "/v1/sweeps/x/top?k=0", 422, "k"),
    ("k 101", "/v1/sweeps/x/top?k=101", 422, "k"),
    ("unknown trial state", "/v1/sweeps/x/trials?state=DONE", 422, "state"),
    ("negative trial number", "/v1/sweeps/x/trials/-1", 422, "number"),
    ("trial number 1e10", "/v1/sweeps/x/trials/10000000000", 422, "number"),
    ("trial number NaN", "/v1/sweeps/x/trials/NaN", 422, "number"),
    ("token id 0", "/v1/tokens/0", 422, "token_id"),
]


@pytest.mark.parametrize(
    ("path", "status", "text"), [c[1:] for c in PATH_CASES], ids=[c[0] for c in PATH_CASES]
)
def test_bad_paths_and_queries(api: TestClient, path: str, status: int, text: str) -> None:
    method = "DELETE" if path.startswith("/v1/tokens") else "GET"
    response = api.request(method, path)
    assert response.status_code == status, response.text
    assert text in response.text


# (method, path with {n} for the number, where the 422 says the number was)
INTEGER_PARAMETERS = [
    ("GET", "/v1/sweeps?cursor={n}", ["query", "cursor"]),
    ("GET", "/v1/sweeps?limit={n}", ["query", "limit"]),
    ("GET", "/v1/sweeps/known/top?k={n}", ["query", "k"]),
    ("GET", "/v1/sweeps/known/trials?cursor={n}", ["query", "cursor"]),
    ("GET", "/v1/sweeps/known/trials?limit={n}", ["query", "limit"]),
    ("GET", "/v1/sweeps/known/trials/{n}", ["path", "number"]),
    ("DELETE", "/v1/tokens/{n}", ["path", "token_id"]),
]
INTEGER_MAX = 2**31 - 1  # PostgreSQL's INTEGER, which ids and trial numbers are stored as


def test_integers_beyond_the_databases_range_are_422_naming_the_parameter(
    client: TestClient,
) -> None:
    known = {"name": "known", "task": "synthetic", "epochs": 4}
    assert client.post("/v1/sweeps", json=known).status_code == 201
    for method, path, where in INTEGER_PARAMETERS:
        for n in (INTEGER_MAX + 1, 2148131055245):  # the second, a cursor a client sent
            response = client.request(method, path.format(n=n))
            assert response.status_code == 422, (path.format(n=n), response.text)
            assert [error["loc"] for error in response.json()["detail"]] == [where]


def test_the_largest_database_integer_is_still_a_valid_cursor_and_number(
    client: TestClient,
) -> None:
    known = {"name": "known", "task": "synthetic", "epochs": 4}
    assert client.post("/v1/sweeps", json=known).status_code == 201
    older = client.get(f"/v1/sweeps?cursor={INTEGER_MAX}")
    assert [s["name"] for s in older.json()["items"]] == ["known"]
    assert client.get(f"/v1/sweeps/known/trials?cursor={INTEGER_MAX}").json()["items"] == []
    trial = client.get(f"/v1/sweeps/known/trials/{INTEGER_MAX}")
    assert trial.status_code == 404
    assert f"has no trial {INTEGER_MAX}" in trial.json()["detail"]
    assert client.delete(f"/v1/tokens/{INTEGER_MAX}").status_code == 404


def test_a_body_over_the_limit_gets_the_same_json_413_with_or_without_content_length(
    api: TestClient,
) -> None:
    big = b'{"name": "big", "description": "' + b"x" * (70 * 1024) + b'"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield big

    declared = api.post("/v1/sweeps", content=big, headers={"content-type": JSON})
    chunked = api.post("/v1/sweeps", content=chunks(), headers={"content-type": JSON})
    assert declared.request.headers["content-length"] == str(len(big))
    assert "content-length" not in chunked.request.headers
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == JSON
        assert "over the limit of 65536 bytes" in response.json()["detail"]
    assert declared.json() == chunked.json()
    assert api.get("/v1/sweeps/big").status_code == 404


def test_duplicate_is_409_and_control_of_unknown_is_404(client: TestClient) -> None:
    good = {"name": "dup", "task": "synthetic", "n_trials": 1}
    assert client.post("/v1/sweeps", json=good).status_code == 201
    again = client.post("/v1/sweeps", json=good)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]
    missing = client.post("/v1/sweeps/nope/pause")
    assert missing.status_code == 404
    assert "no sweep named 'nope'" in missing.json()["detail"]
