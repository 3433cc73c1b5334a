"""Schemathesis against the live API: a real `sweep api` process on a real SQLite file.

Every operation of the OpenAPI description gets generated requests, valid and not,
and then whole scenarios that follow the links between operations (create a sweep,
then read, control, page through it). None may answer with a server error.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from sweep.store.engine import make_engine
from sweep.store.migrations import upgrade
from tests.conftest import issue_token
from tests.e2e.conftest import SWEEP, free_port

EXAMPLES = 25  # per operation; the whole module stays well under a minute


class LiveApi:
    """The server's address, and an admin token to call it with."""

    TOKEN_ID = 2_000_000_000  # the fuzzer revokes made-up token ids, small ones first

    def __init__(self, base_url: str, database_url: str) -> None:
        self.base_url = base_url
        self.database_url = database_url
        self.statuses: Counter[int] = Counter()
        token = issue_token(database_url, "admin", name="fuzz")
        self.headers = {"Authorization": f"Bearer {token}"}
        self._run("UPDATE api_tokens SET id = :id", id=self.TOKEN_ID)

    def reset(self) -> None:
        """Back to an empty store with only our token, unrevoked: each scenario starts alike."""
        self._run("DELETE FROM sweeps")
        self._run("DELETE FROM api_tokens WHERE id != :id", id=self.TOKEN_ID)
        self._run("UPDATE api_tokens SET revoked_at = NULL, last_used_at = NULL")
        storage = optuna.storages.RDBStorage(self.database_url)
        for study in storage.get_all_studies():
            storage.delete_study(study._study_id)
        storage.engine.dispose()

    def _run(self, sql: str, **params: object) -> None:
        engine = make_engine(self.database_url)
        with engine.begin() as connection:
            connection.execute(text(sql), params)
        engine.dispose()


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    folder = Path(tmp_path_factory.mktemp("fuzz"))
    url = f"sqlite:///{folder / 'sweep.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    port = free_port()
    env = {**os.environ, "SWEEP_DATABASE_URL": url, "SWEEP_RATE_LIMIT": "off"}
    env.pop("SWEEP_AUTH", None)
    log = (folder / "api.log").open("wb")
    server = subprocess.Popen(
        [*SWEEP, "api", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        raise AssertionError((folder / "api.log").read_text())
    yield LiveApi(base, url)
    server.terminate()
    server.wait(timeout=20)
    log.close()
    tail = (folder / "api.log").read_text(errors="replace")
    assert "Traceback" not in tail, tail


@pytest.fixture(scope="module")
def api_schema(live_api: LiveApi) -> Any:
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    schema.config.generation.update(max_examples=EXAMPLES)
    schema.config.headers = live_api.headers
    return schema


def test_no_operation_answers_with_a_server_error(api_schema: Any, live_api: LiveApi) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/sweeps", "/v1/tokens/{token_id}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(headers=live_api.headers, checks=[not_a_server_error])
            live_api.statuses[response.status_code] += 1

        fuzz()
    # not a vacuous run: sweeps and tokens were created, read, and refused
    assert {200, 201, 404, 422} <= set(live_api.statuses), live_api.statuses
    assert 401 not in live_api.statuses, "the fuzzer's own token stopped working"


def test_linked_scenarios_never_answer_with_a_server_error(
    api_schema: Any, live_api: LiveApi
) -> None:
    # Scenarios of valid requests, so that created sweeps feed the routes linked to them.
    api_schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE])

    class Scenarios(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": live_api.headers}

        def setup(self) -> None:
            live_api.reset()  # the server keeps state; a replayed scenario must meet the same

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])
            seen[(case.method, case.path, response.status_code)] += 1

    seen: Counter[tuple[str, str, int]] = Counter()

    Scenarios.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=6,
            phases=[Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # the links were followed: a sweep created in a scenario was then found by a later step
    # (200, or 409 for a transition its state does not allow), not only 404s for made-up names
    found = sum(n for (_, path, code), n in seen.items() if "{name}" in path and code != 404)
    assert found >= 1, seen


def test_chunked_body_over_the_limit_is_413_on_the_live_server(live_api: LiveApi) -> None:
    live_api.reset()  # a scenario may have revoked our token

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "chunked", "description": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    with httpx.Client(base_url=live_api.base_url, headers=live_api.headers) as client:
        request = client.build_request(
            "POST", "/v1/sweeps", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
        assert response.status_code == 413
        assert client.get("/v1/sweeps/chunked").status_code == 404
