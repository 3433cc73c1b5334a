"""Database servers of one's own for fault runs: a private PostgreSQL cluster and PgBouncer.

A chaos run restarts PostgreSQL many times; it must never be the shared server
other processes use. ``PrivatePostgres`` runs ``initdb`` into a temporary folder
(as the ``postgres`` OS user when run as root: PostgreSQL refuses root), serves it
on a free port with trust authentication, and can be restarted at will.
``PgBouncer`` puts a transaction-mode pooler in front of one of its databases.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("SWEEP_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL and PgBouncer refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _shared_folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    return folder


class PrivatePostgres:
    """A PostgreSQL cluster of this process's own, on 127.0.0.1:``port``, trust auth."""

    def __init__(self, folder: Path, port: int, max_connections: int) -> None:
        self.folder = folder
        self.port = port
        self.data = folder / "data"
        self.log = folder / "server.log"
        self._options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={max_connections}"
        )

    @property
    def admin_url(self) -> str:
        """libpq URL of the ``postgres`` database, for psycopg."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name``; its SQLAlchemy URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _pg_ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("-o", self._options, "-w", "start")

    def stop(self) -> None:
        """Stop the server, disconnecting every client (fast shutdown)."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Restart the server: every client connection is cut, as in a failover."""
        self._pg_ctl("-o", self._options, "-m", "fast", "-w", "restart")

    def server_connections(self, database: str) -> int:
        """Client backends connected to ``database`` now, as the server counts them."""
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = %s AND backend_type = 'client backend'",
                (database,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def transactions(self, database: str) -> int:
        """Transactions committed and rolled back in ``database`` so far (pg_stat_database)."""
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_stat_clear_snapshot()")
            row = admin.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                (database,),
            ).fetchone()
        assert row is not None
        return int(row[0])


@contextmanager
def private_postgres(max_connections: int = 300) -> Iterator[PrivatePostgres]:
    """A fresh private cluster, started; stopped and deleted afterwards."""
    folder = _shared_folder("sweep-pg-")
    cluster = PrivatePostgres(folder, free_port(), max_connections)
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(cluster.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def pgbouncer_binary() -> str | None:
    """The pgbouncer executable, installing Debian's package when missing and allowed."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "pgbouncer"],
        ):
            subprocess.run(command, capture_output=True, timeout=600, check=False)
        found = shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    return found


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def pgbouncer(
    binary: str, database: str, server_port: int, pool_size: int
) -> Iterator[tuple[str, int]]:
    """PgBouncer in transaction mode in front of ``database`` on 127.0.0.1:``server_port``,
    opening at most ``pool_size`` server connections; yields (SQLAlchemy URL, its port)."""
    folder = _shared_folder("pgbouncer-")
    port = free_port()
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{database} = host=127.0.0.1 port={server_port} dbname={database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder}/userlist.txt\npool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 1000\n"
        # retry a server login after 1 s, not PgBouncer's 15: a restart costs seconds, not 15+
        "server_login_retry = 1\nadmin_users = postgres\nstats_users = postgres\n"
        f"logfile = {folder}/pgbouncer.log\n"
    )
    for path in folder.iterdir():
        path.chmod(0o666)
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [binary, *as_user, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _accepts(port):
            if time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not listen: " + _read(folder / "pgbouncer.log"))
            time.sleep(0.1)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}", port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
