"""`sweep up` as people run it: a real process that starts the API and a worker, and stops them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sweep.cli.serving import stop_children
from tests.e2e.conftest import SWEEP


def sweep_processes_in(cwd: Path) -> dict[int, str]:
    """The live `python -m sweep …` processes whose working directory is ``cwd``, by pid."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "-m sweep" in cmdline and Path(os.readlink(proc / "cwd")) == cwd:
                found[int(proc.name)] = cmdline
        except OSError:  # gone meanwhile, a zombie, or not ours to read
            continue
    return found


def test_up_stops_its_api_and_worker_when_the_port_is_taken(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'sweep.db'}",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("SWEEP_TOKEN", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            up = subprocess.run(
                [*SWEEP, "up", "--n-trials", "1", "--epochs", "2", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert up.returncode != 0, (up.stdout, up.stderr)
            assert "exited at start" in up.stderr, up.stderr
            assert "address already in use" in (tmp_path / ".sweep" / "api.log").read_text()
            assert sweep_processes_in(tmp_path) == {}
        finally:
            for pid in sweep_processes_in(tmp_path):  # don't leak them when the test fails
                os.kill(pid, signal.SIGKILL)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    ignores_sigterm = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)"
    )
    with subprocess.Popen([sys.executable, "-c", ignores_sigterm], stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            started = time.monotonic()
            stop_children([child], grace=0.5)
            assert child.returncode == -signal.SIGKILL
            assert time.monotonic() - started < 10
        finally:
            if child.poll() is None:
                child.kill()
