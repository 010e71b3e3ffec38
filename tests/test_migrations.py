"""Upgrades: a database made by the released schema v1 opens with the current
code, is migrated to ``SCHEMA_VERSION`` at start-up, and keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.storage import SCHEMA_VERSION, StoreError, open_storage, schema
from tests.helpers.delivery import due_alerts

V1_DUMP = Path(__file__).parent / "data" / "schema_v1.sql"


def v1_database(tmp_path: Path) -> Path:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1_DUMP.read_text(encoding="utf-8"))
    conn.close()
    return path


def test_the_v1_database_is_really_v1(tmp_path: Path) -> None:
    conn = sqlite3.connect(v1_database(tmp_path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_v1_database_upgrades_and_keeps_its_data(tmp_path: Path) -> None:
    path = v1_database(tmp_path)
    store = open_storage(path)  # migrations run at start-up
    db = store.db
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []

    feeds = {r["url"]: r for r in db.query("SELECT * FROM feeds")}
    assert feeds["https://news.example.org/feed.xml"]["etag"] == '"abc"'
    assert feeds["https://broken.example.org/rss"]["consecutive_failures"] == 3
    article = next(db.query("SELECT * FROM articles WHERE id = 1"))
    assert article["body"].startswith("The Kremlin said on Tuesday")
    assert article["body_pruned"] == 0
    assert [r[0] for r in db.execute("SELECT guid FROM items ORDER BY id")] == ["g1", "g2"]
    match = next(db.query("SELECT * FROM matches"))
    assert match["topic"] == "negotiation" and "negotiations" in match["evidence"]
    assert store.outbox.counts() == {"sent": 1, "pending": 1}
    cycle = store.ops.last_cycle()
    assert cycle is not None and cycle.items_new == 2
    assert store.ops.get_meta("daemon_started_at") == "2025-01-10T09:59:00+00:00"

    # The upgraded store works: the pending alert is due, the seen items stay seen.
    due = due_alerts(store)
    assert [a.alert_key for a in due] == ["a1-negotiation-mail"]
    assert store.items.known_article("url:https://news.example.org/a/1") == 1
    store.close()

    # Opening again is a no-op: nothing re-runs.
    again = open_storage(path)
    assert again.ops.schema_version() == SCHEMA_VERSION
    assert again.outbox.counts() == {"sent": 1, "pending": 1}
    again.close()


def test_a_failing_migration_rolls_back_and_keeps_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = v1_database(tmp_path)
    open_storage(path).close()  # up to the current version

    def broken(db) -> None:  # type: ignore[no-untyped-def]
        db.execute("CREATE TABLE half_done (x INTEGER)")
        raise sqlite3.OperationalError("simulated failure in the middle of a migration")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="simulated failure"):
        open_storage(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this newsmon"):
        open_storage(path)
