"""Database faults: a locked database and a full disk fail the poll with a clear
error, roll back (nothing marked seen), and the daemon recovers and raises a
health notice once the database takes writes again."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.runtime.daemon import Daemon
from monitor.runtime.systemd import Notifier
from tests.helpers.servers import Site, rss
from tests.helpers.service import write_config

ITEMS = [{"title": f"Story {n}", "guid": f"s{n}", "description": f"Paragraph {n}. " * 300}
         for n in range(5)]


@pytest.fixture
def feed_url() -> str:
    with Site() as site:
        site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss(ITEMS))
        yield site.url("/feed.xml")


def _count(db: Path, table: str, where: str = "1") -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
    finally:
        conn.close()


async def _started(config_path: Path) -> Daemon:
    daemon = Daemon(load_config(config_path), notifier=Notifier(None))
    await daemon.start(paused=True)  # jobs scheduled but driven by hand here
    return daemon


@pytest.mark.timeout(60)
def test_a_locked_database_fails_the_poll_then_the_daemon_recovers(
    tmp_path: Path, feed_url: str
) -> None:
    config = write_config(tmp_path, [feed_url])
    db_path = tmp_path / "state" / "test.db"

    async def scenario() -> None:
        daemon = await _started(config)
        try:
            assert daemon.runtime is not None
            # Shorter than the production busy timeout (10 s) to keep the test fast.
            daemon.runtime.storage.db.execute("PRAGMA busy_timeout = 300")
            holder = sqlite3.connect(db_path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            failed = await daemon.poll_feed(feed_url)
            assert failed is not None and not failed.ok
            assert failed.error_kind == "database"
            assert "database is locked by another process" in (failed.error or "")
            assert _count(db_path, "items") == 0  # rolled back: nothing marked seen
            assert daemon.status_line().endswith("database error")
            holder.execute("ROLLBACK")
            holder.close()

            recovered = await daemon.poll_feed(feed_url)
            assert recovered is not None and recovered.ok and recovered.new_items == len(ITEMS)
            assert _count(db_path, "items") == len(ITEMS)
            notices = _count(db_path, "alerts", "kind = 'notice' AND title = 'database error'")
            assert notices == 1
            cycles = sqlite3.connect(db_path).execute(
                "SELECT feeds_ok, feeds_failed, error FROM cycles").fetchall()
            assert cycles and cycles[0][1] == 1 and "locked" in cycles[0][2]
            metrics = daemon.metrics.render().decode()
            assert 'newsmon_poll_errors_total{kind="database"} 1.0' in metrics
        finally:
            await daemon.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_full_disk_fails_the_poll_rolls_back_and_recovers(tmp_path: Path, feed_url: str) -> None:
    config = write_config(tmp_path, [feed_url])
    db_path = tmp_path / "state" / "test.db"

    async def scenario() -> None:
        daemon = await _started(config)
        try:
            assert daemon.runtime is not None
            db = daemon.runtime.storage.db
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages + 2}")  # "the disk" is nearly full
            failed = await daemon.poll_feed(feed_url)
            assert failed is not None and not failed.ok and failed.error_kind == "database"
            assert "database or disk is full" in (failed.error or "")
            # Each item is one transaction: those stored before the disk filled are
            # whole (item + article); the one that failed, and the rest, are unseen.
            stored = _count(db_path, "items")
            assert stored < len(ITEMS)
            assert _count(db_path, "items", "article_id IN (SELECT id FROM articles)") == stored
            assert _count(db_path, "articles") == stored
            conn = sqlite3.connect(db_path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()

            db.execute("PRAGMA max_page_count = 1073741823")  # space freed
            recovered = await daemon.poll_feed(feed_url)
            assert recovered is not None and recovered.ok
            assert recovered.new_items == len(ITEMS) - stored
            assert _count(db_path, "items") == len(ITEMS)
            assert _count(db_path, "alerts", "kind = 'notice' AND title = 'database error'") == 1
        finally:
            await daemon.stop()

    asyncio.run(scenario())
