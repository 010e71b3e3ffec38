"""A real PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` in a temporary folder,
listening on a free loopback port, stopped at the end of the session.

Tests ask for the ``postgres_server`` fixture (one server per pytest process) and make
their own database in it with ``PostgresServer.new_database``, so tests never share
rows. Where PostgreSQL's binaries are absent the fixture skips with the reason;
``.ci/run`` installs Debian's ``postgresql`` package so that CI never skips.

PostgreSQL refuses to run as root, so under root (CI containers) the server runs as
the ``postgres`` user Debian's package creates (or ``nobody``), via ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_pg_bin", "postgres_server", "start_postgres"]


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(versions[0]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[list[str], int | None, int | None]:
    """The command prefix, uid and gid that PostgreSQL runs under."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", name, "--"], user.pw_uid, user.pw_gid
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@dataclass
class PostgresServer:
    """A running server: connect as ``user`` (trust auth, loopback only) on ``port``."""

    bin: Path
    data: Path
    port: int
    user: str
    prefix: list[str]
    log: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` through ``psql`` (no Python driver needed) and return its output."""
        psql = self.bin / "psql"
        out = subprocess.run(
            [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql],
            check=True, capture_output=True, text=True, timeout=60)
        return out.stdout

    def new_database(self, prefix: str = "newsmon") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)


def start_postgres(root: Path) -> PostgresServer:
    """initdb a cluster under ``root`` and start it on a free loopback port."""
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise FileNotFoundError("PostgreSQL's initdb/pg_ctl are not installed (Debian: postgresql)")
    prefix, uid, gid = _run_as()
    root.mkdir(parents=True, exist_ok=True)
    data, log = root / "data", root / "server.log"
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    user = "newsmon"
    subprocess.run([*prefix, str(pg_bin / "initdb"), "-D", str(data), "-U", user, "-A", "trust",
                    "-E", "UTF8", "--no-sync", "--locale=C"],
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    # Sockets stay in the data folder (not /var/run/postgresql, which may be absent);
    # fsync off: a test server's durability is not under test, its speed is.
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data}"
               " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run([*prefix, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                    "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=90)
    server = PostgresServer(bin=pg_bin, data=data, port=port, user=user, prefix=prefix, log=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.psql("SELECT 1")
            return server
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for this pytest process, or a skip naming what is missing."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed here (initdb/pg_ctl not found; Debian: postgresql)")
    root = Path(tempfile.mkdtemp(prefix="newsmon-pg-"))
    try:
        server = start_postgres(root)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
