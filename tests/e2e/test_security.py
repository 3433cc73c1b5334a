"""Security as a user meets it with real processes: tokens from the CLI, refusals, no leaks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import drop_pg_database, new_pg_database
from tests.e2e.conftest import SWEEP, Processes, free_port, wait_for

SYNTHETIC = {"task": "synthetic", "epochs": 2, "n_trials": 2}


def test_public_bind_without_auth_is_refused(processes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(f"sqlite:///{tmp_path / 'open.db'}")
    procs.env["SWEEP_AUTH"] = "false"
    refused = procs.run("api", "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 1
    assert "refusing to serve on 0.0.0.0" in refused.stderr
    assert "SWEEP_AUTH" in refused.stderr


def test_cli_tokens_against_a_running_api(processes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    procs: Processes = processes(f"sqlite:///{tmp_path / 'cli.db'}")
    assert procs.run("db", "upgrade").returncode == 0
    api = procs.api()  # sets SWEEP_TOKEN to a user token for the CLI
    base = str(api.base_url)
    submitted = procs.run("submit", "one", "--task", "synthetic", "--n-trials", "1", "--api", base)
    assert submitted.returncode == 0, submitted.stderr

    reader = procs.token("reader")
    procs.env["SWEEP_TOKEN"] = reader
    assert procs.run("ls", "--api", base).returncode == 0
    denied = procs.run("submit", "two", "--task", "synthetic", "--api", base)
    assert denied.returncode == 1
    assert "403" in denied.stderr

    del procs.env["SWEEP_TOKEN"]
    anonymous = procs.run("ls", "--api", base)
    assert anonymous.returncode == 1
    assert "401" in anonymous.stderr and "SWEEP_TOKEN" in anonymous.stderr

    listed = json.loads(procs.run("token", "ls", "--json").stdout)
    reader_id = next(t["id"] for t in listed if t["role"] == "reader")
    assert all(reader not in json.dumps(t) for t in listed)
    revoked = procs.run("token", "revoke", str(reader_id))
    assert revoked.returncode == 0, revoked.stderr
    after = api.get("/v1/sweeps", headers={"Authorization": f"Bearer {reader}"})
    assert after.status_code == 401
    assert "revoked" in after.json()["detail"]


def test_no_secret_in_logs_command_lines_or_responses(processes) -> None:  # type: ignore[no-untyped-def]
    # PostgreSQL here trusts local connections, so a made-up password still connects.
    url = new_pg_database()
    password = "pw-must-not-leak-7f3a"
    with_password = url.replace("postgres@", f"postgres:{password}@")
    try:
        procs: Processes = processes(with_password)
        upgraded = procs.run("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "***" in upgraded.stdout and password not in upgraded.stdout + upgraded.stderr
        api = procs.api()
        token = procs.env["SWEEP_TOKEN"]
        worker = procs.start("worker", "--device", "cpu", name="worker")
        assert api.post("/v1/sweeps", json={"name": "quiet", **SYNTHETIC}).status_code == 201
        bad = api.get("/v1/sweeps", headers={"Authorization": f"Bearer {token}x"})
        assert bad.status_code == 401 and token not in bad.text

        def done() -> bool:
            return bool(api.get("/v1/sweeps/quiet").json()["status"] == "completed")

        wait_for(done, 60, "the sweep to complete:\n" + procs.log("worker"))
        for proc in procs.started:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
            assert token not in cmdline and password not in cmdline
        assert worker.poll() is None
        procs.stop_all()
        for name in ("api", "worker"):
            log = procs.log(name)
            assert password not in log and token not in log and token[4:] not in log
        assert "***" in procs.log("api")  # the store is named, masked
    finally:
        drop_pg_database(url)


def test_sweep_up_issues_a_session_token_and_revokes_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'up.db'}",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
    }
    env.pop("SWEEP_TOKEN", None)
    env.pop("SWEEP_AUTH", None)
    port = free_port()
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        up = subprocess.Popen(
            [*SWEEP, "up", "--n-trials", "1", "--epochs", "2", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "API serving at" in out.read_text(), 120, "sweep up to finish its sweep")
        printed = out.read_text()
        match = re.search(r"export SWEEP_TOKEN=(\S+)", printed)
        assert match, printed
        token = match[1]
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        assert api.get("/v1/sweeps").status_code == 401
        sweeps = api.get("/v1/sweeps", headers={"Authorization": f"Bearer {token}"}).json()
        assert sweeps["items"][0]["status"] == "completed"
        for name in ("api", "worker"):
            assert token not in (tmp_path / ".sweep" / f"{name}.log").read_text()
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    listed = subprocess.run(
        [*SWEEP, "token", "ls", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    (session_token,) = json.loads(listed.stdout)
    assert session_token["name"] == "sweep-up" and session_token["state"] == "revoked"
