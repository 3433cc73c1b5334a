"""A request that finds every pooled connection busy is told to retry, at once."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from sweep.config import Settings
from tests.conftest import issue_token


def test_an_exhausted_pool_answers_503_with_retry_after(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite"):
        pytest.skip("the pool settings size PostgreSQL's pool")
    tight = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.2}
    )
    headers = {"Authorization": f"Bearer {issue_token(settings.database_url)}"}
    with TestClient(create_app(tight), headers=headers) as client:
        engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
        with engine.connect():  # the pool's only connection, held elsewhere
            started = time.monotonic()
            response = client.get("/v1/sweeps")
            waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert "retry" in response.json()["detail"]
        assert waited < 2
        assert client.get("/v1/sweeps").status_code == 200  # once it is free again
