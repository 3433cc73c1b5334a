"""One connection per request: a read never waits on the pool for a second connection."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from sweep.config import Settings
from tests.helpers import create, run_worker

READ_PATHS = (
    "/v1/sweeps",
    "/v1/sweeps/held",
    "/v1/sweeps/held/top",
    "/v1/sweeps/held/trials",
    "/v1/sweeps/held/best",
)


class CheckoutPeak:
    """The most connections of the engine's pool checked out at once by requests.

    The API's reaper thread shares the pool; its checkouts are not a request's.
    """

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self._out: set[int] = set()
        self.peak = 0
        event.listen(engine.pool, "checkout", self._checkout)
        event.listen(engine.pool, "checkin", self._checkin)

    def reset(self) -> None:
        with self._lock:
            self.peak = len(self._out)

    def _checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        if threading.current_thread().name == "reaper":
            return
        with self._lock:
            self._out.add(id(record))
            self.peak = max(self.peak, len(self._out))

    def _checkin(self, _dbapi: Any, record: Any) -> None:
        with self._lock:
            self._out.discard(id(record))


@pytest.mark.parametrize("path", READ_PATHS)
def test_a_read_holds_one_connection_at_a_time(
    client: TestClient, settings: Settings, path: str
) -> None:
    create(client, "held", n_trials=3)
    run_worker(settings)
    assert client.get("/v1/sweeps/held/best").status_code == 200  # a trial has completed
    peak = CheckoutPeak(client.app.state.engine)  # type: ignore[attr-defined]
    peak.reset()

    response = client.get(path)

    assert response.status_code == 200, response.text
    assert peak.peak == 1
