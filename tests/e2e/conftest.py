"""Helpers for tests that run `sweep api` and `sweep worker` as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks._clusters import PG_BIN, PrivatePostgres, free_port
from benchmarks._clusters import pgbouncer_binary as find_pgbouncer
from benchmarks._clusters import private_postgres as start_private_postgres
from tests.conftest import IN_CI

SWEEP = [sys.executable, "-m", "sweep"]


class Processes:
    """Starts sweep commands with a shared environment and stops them all at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([*SWEEP, *args], env=self.env, stdout=log, stderr=log)
        self.started.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SWEEP, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def token(self, role: str = "user") -> str:
        """A new API token from `sweep token create` (the database must be migrated)."""
        created = self.run("token", "create", "--role", role, "--name", "e2e")
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()

    def api(self, *options: str) -> httpx.Client:
        """`sweep api` on a free port, and a client that sends a user token (also SWEEP_TOKEN)."""
        token = self.env["SWEEP_TOKEN"] = self.token()
        port = free_port()
        self.start("api", "--port", str(port), *options, name="api")
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").status_code == 200:
                    return client
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("the API did not become ready:\n" + self.log("api"))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    def make(url: str) -> Processes:
        env = {
            **os.environ,
            "SWEEP_DATABASE_URL": url,
            "SWEEP_HEARTBEAT_INTERVAL": "1",
            "SWEEP_GRACE_PERIOD": "3",
            "SWEEP_REAP_INTERVAL": "1",
            "SWEEP_POLL_INTERVAL": "0.2",
            "SWEEP_MAX_POLL_INTERVAL": "1",
            "OMP_NUM_THREADS": "1",
        }
        made.append(Processes(env, tmp_path))
        return made[-1]

    made: list[Processes] = []
    yield make  # type: ignore[misc]
    for p in made:
        p.stop_all()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own on a free port: free to stop and restart,
    which the shared server never is."""
    if not (PG_BIN / "initdb").exists():
        if IN_CI:
            pytest.fail(f"PostgreSQL's server binaries are required in CI ({PG_BIN})")
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN}")
    with start_private_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pgbouncer_binary() -> str:
    """The pgbouncer executable (Debian's package is installed when missing, as root)."""
    found = find_pgbouncer()
    if found is None:
        if IN_CI:
            pytest.fail("pgbouncer is required in CI: apt-get install -y pgbouncer")
        pytest.skip("pgbouncer is not installed (apt-get install -y pgbouncer)")
    return found
