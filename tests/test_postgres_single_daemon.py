"""One ``newsmon run`` per PostgreSQL database, and never beside the cluster processes:
real ``newsmon`` processes against a real server (the session advisory lock of
``runtime/pg_lock.py``).

- a second ``run`` exits 1 naming the first (pid, since), as on SQLite;
- a ``run`` beside a poller, and a poller beside a ``run``, are refused both ways,
  while two cluster processes coexist;
- a SIGKILLed holder frees the lock: a new ``run`` starts at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.runtime.pg_lock import LOCK_KEY
from tests.helpers.configs import ConfigFactory
from tests.helpers.paths import REPO
from tests.helpers.postgres import PostgresServer
from tests.helpers.servers import Site, rss
from tests.helpers.service import newsmon, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ITEMS = [{"title": "Quiet day", "link": "http://news.test/1", "guid": "1",
          "description": "nothing happened"}]


class Proc:
    """A long-running ``newsmon`` command in a subprocess, its output in a file."""

    def __init__(self, config: Path, *args: str, log: Path) -> None:
        self.log_path = log
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config), *args], cwd=REPO,
                stdout=out, stderr=subprocess.STDOUT, env=clean)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_running(self, text: str) -> None:
        wait_for(lambda: text in self.log() or self.proc.poll() is not None, 90,
                 f"{text!r} in the log")
        assert self.proc.poll() is None, self.log()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


@pytest.fixture
def feed_site() -> Iterator[Site]:
    with Site(routes={"/feed.xml": (200, {"Content-Type": "application/rss+xml"},
                                    rss(ITEMS))}) as site:
        yield site


@pytest.fixture
def pg_config(tmp_path: Path, postgres_server: PostgresServer, feed_site: Site) -> Path:
    url = postgres_server.new_database("single")
    return ConfigFactory(tmp_path).write(database=url, feeds=[feed_site.url("/feed.xml")],
                                         interval="5m", fetch={"timeout": "2s"},
                                         service={"stop_timeout": "3s"})


def holders(server: PostgresServer, config: Path) -> list[str]:
    """The modes in which sessions hold the single-daemon lock on the config's database."""
    database = _database_of(config)
    unsigned = LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    out = server.psql(
        "SELECT l.mode FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        f" WHERE l.locktype = 'advisory' AND l.granted AND d.datname = '{database}'"
        f" AND l.classid::bigint = {unsigned >> 32}"
        f" AND l.objid::bigint = {unsigned & 0xFFFF_FFFF} ORDER BY l.mode")
    return out.split()


def _database_of(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.startswith("database:"):
            return line.rsplit("/", 1)[1].strip().strip("'\"")
    raise AssertionError("no database: in the config")


@pytest.mark.timeout(300)
def test_a_second_run_exits_1_naming_the_first(tmp_path: Path, pg_config: Path,
                                                postgres_server: PostgresServer) -> None:
    first = Proc(pg_config, "run", log=tmp_path / "first.log")
    try:
        first.wait_running("newsmon running")
        assert holders(postgres_server, pg_config) == ["ExclusiveLock"]
        second = newsmon("--config", str(pg_config), "run", timeout=120)
        assert second.returncode == 1, second.stdout + second.stderr
        text = second.stdout + second.stderr
        # The same words as SQLite's refusal: who holds it, since when, what to do.
        assert "another newsmon run" in text and f"pid {first.proc.pid}" in text, text
        assert "since 20" in text and "--delivery-only" in text, text
        assert first.proc.poll() is None  # the first one is untouched
        # A helper still runs beside it, as on SQLite (it cooperates through the claims).
        helper = Proc(pg_config, "run", "--delivery-only", log=tmp_path / "helper.log")
        try:
            helper.wait_running("newsmon running")
        finally:
            assert helper.stop() == 0, helper.log()
        assert first.stop() == 0, first.log()
        assert holders(postgres_server, pg_config) == []  # released on a clean stop
    finally:
        first.stop()


@pytest.mark.timeout(300)
def test_run_and_the_cluster_refuse_each_other(tmp_path: Path, pg_config: Path,
                                               postgres_server: PostgresServer) -> None:
    poller = Proc(pg_config, "poller", "--lease", "6", log=tmp_path / "poller.log")
    deliver: Proc | None = None
    try:
        poller.wait_running("newsmon poller running")
        # Cluster processes coexist: a delivery process joins the poller.
        deliver = Proc(pg_config, "deliver", log=tmp_path / "deliver.log")
        deliver.wait_running("newsmon deliver running")
        assert holders(postgres_server, pg_config) == ["ShareLock", "ShareLock"]
        run = newsmon("--config", str(pg_config), "run", timeout=120)
        text = run.stdout + run.stderr
        assert run.returncode == 1, text
        assert "the cluster runs on" in text and "2 process(es)" in text, text
        assert f"poller pid {poller.proc.pid}" in text, text
        assert f"deliver pid {deliver.proc.pid}" in text, text
        assert poller.proc.poll() is None and deliver.proc.poll() is None
        assert deliver.stop() == 0, deliver.log()
        assert poller.stop() == 0, poller.log()
    finally:
        poller.stop()
        if deliver is not None:
            deliver.stop()

    daemon = Proc(pg_config, "run", log=tmp_path / "daemon.log")
    try:
        daemon.wait_running("newsmon running")  # the cluster is gone: the lock is free
        for command in ("poller", "worker", "deliver"):
            refused = newsmon("--config", str(pg_config), command, timeout=120)
            text = refused.stdout + refused.stderr
            assert refused.returncode == 1, text
            assert f"a newsmon run (pid {daemon.proc.pid}" in text, text
            assert f"a {command} beside it" in text and "docs/scale-out.md" in text, text
        assert daemon.proc.poll() is None
        assert holders(postgres_server, pg_config) == ["ExclusiveLock"]
    finally:
        assert daemon.stop() == 0, daemon.log()


@pytest.mark.timeout(300)
def test_a_sigkilled_holder_frees_the_lock(tmp_path: Path, pg_config: Path,
                                           postgres_server: PostgresServer) -> None:
    first = Proc(pg_config, "run", log=tmp_path / "first.log")
    try:
        # The server ends a dead session when its socket closes, and its lock with it.
        kill_then_run(first, "newsmon running", tmp_path / "second.log", postgres_server, pg_config)
        # A killed poller frees its share too: a run starts after it.
        poller = Proc(pg_config, "poller", "--lease", "6", log=tmp_path / "poller.log")
        kill_then_run(poller, "newsmon poller running", tmp_path / "third.log", postgres_server,
                      pg_config)
    finally:
        first.stop()


def kill_then_run(holder: Proc, running: str, log: Path, server: PostgresServer,
                  config: Path) -> None:
    """SIGKILL ``holder`` once running; the lock is freed and a new run takes it."""
    holder.wait_running(running)
    holder.proc.kill()
    holder.proc.wait(10)
    wait_for(lambda: holders(server, config) == [], 20, "the lock to be freed")
    after = Proc(config, "run", log=log)
    try:
        after.wait_running("newsmon running")
        assert holders(server, config) == ["ExclusiveLock"]
    finally:
        assert after.stop() == 0, after.log()


def _backends(server: PostgresServer, url: str) -> list[int]:
    """Server pids of the sessions holding the lock on ``url``'s database."""
    database = url.rsplit("/", 1)[1]
    unsigned = LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    out = server.psql(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        f" WHERE l.locktype = 'advisory' AND l.granted AND d.datname = '{database}'"
        f" AND l.classid::bigint = {unsigned >> 32} AND l.objid::bigint = {unsigned & 0xFFFF_FFFF}")
    return [int(pid) for pid in out.split()]


@pytest.mark.timeout(120)
def test_a_broken_lock_session_is_taken_again_or_stops_the_holder(
        postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.runtime import pg_lock

    monkeypatch.setattr(pg_lock, "CHECK_INTERVAL_S", 0.2)  # the watcher's ping, shortened
    url = postgres_server.new_database("relock")
    lost: list[str] = []
    lock = pg_lock.PgDaemonLock.acquire(url, role="run", exclusive=True, on_lost=lost.append)
    try:
        [backend] = _backends(postgres_server, url)
        # The server ends the session (as a restart would): the watcher takes the lock again.
        postgres_server.psql(f"SELECT pg_terminate_backend({backend})")
        wait_for(lambda: _backends(postgres_server, url) not in ([], [backend]), 20,
                 "the lock to be taken again")
        assert lost == []
    finally:
        lock.release()
    assert _backends(postgres_server, url) == []

    # Ended again, and this time another process takes the lock before the watcher's
    # first ping (5 s after the start, plenty for the two steps below): this one gives up.
    monkeypatch.setattr(pg_lock, "CHECK_INTERVAL_S", 5.0)
    lock = pg_lock.PgDaemonLock.acquire(url, role="run", exclusive=True, on_lost=lost.append)
    try:
        [backend] = _backends(postgres_server, url)
        postgres_server.psql(f"SELECT pg_terminate_backend({backend})")
        wait_for(lambda: _backends(postgres_server, url) == [], 4, "the session to end")
        other = pg_lock.PgDaemonLock.acquire(url, role="run", exclusive=True)
        try:
            wait_for(lambda: lost, 20, "the holder to give up")
            assert "another process took it" in lost[0] and "another newsmon run" in lost[0]
            assert _backends(postgres_server, url) != []  # the other one still holds it
        finally:
            other.release()
    finally:
        lock.release()
    assert _backends(postgres_server, url) == []
