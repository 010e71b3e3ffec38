"""Operations: cycles, meta, backup and integrity, deadlines moved after a clock step."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.errors import StorageError
from monitor.records import to_second, utcnow
from monitor.storage import SCHEMA_VERSION, Storage, open_readonly
from tests.helpers.storage import BACKENDS, FEED_A, new_target, two_feeds


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A two-feed database, on SQLite and on PostgreSQL."""
    storage = two_feeds(new_target(request.param, tmp_path, request))
    yield storage
    storage.close()


def test_cycles_read_back_as_records(store: Storage) -> None:
    ops = store.ops
    assert ops.last_cycle() is None
    started = utcnow()
    cycle_id = ops.record_cycle(started, feeds_ok=2, feeds_failed=1, items_new=5, matches=2,
                                alerts=3, error="network down")
    cycle = ops.last_cycle()
    assert cycle is not None and cycle.id == cycle_id
    assert (cycle.feeds_ok, cycle.feeds_failed, cycle.items_new, cycle.matches, cycle.alerts) == (
        2, 1, 5, 2, 3)
    assert cycle.started_at == to_second(started) and cycle.error == "network down"
    unfinished = ops.start_cycle()
    assert ops.last_cycle() == cycle  # only finished cycles count
    ops.finish_cycle(unfinished, feeds_ok=1, feeds_failed=0, items_new=0, matches=0, alerts=0)
    last = ops.last_cycle()
    assert last is not None and last.id == unfinished


def test_meta_and_schema_version(store: Storage) -> None:
    assert store.ops.get_meta("daemon_pid") is None
    store.ops.set_meta("daemon_pid", "42")
    store.ops.set_meta("daemon_pid", "43")
    assert store.ops.get_meta("daemon_pid") == "43"
    assert store.ops.schema_version() == SCHEMA_VERSION


def test_backup_is_a_consistent_readable_copy(store: Storage, tmp_path: Path) -> None:
    if store.dialect == "postgresql":
        pytest.skip("SQLite's online backup API; PostgreSQL refuses (test_backup_on_postgresql_...)")
    store.ops.set_meta("daemon_pid", "42")
    store.ops.backup(tmp_path / "copy.db")
    copy = open_readonly(tmp_path / "copy.db")
    try:
        assert copy.ops.integrity_check() == "ok" and copy.ops.get_meta("daemon_pid") == "42"
    finally:
        copy.close()
    assert store.ops.database_bytes() > 0


def test_backup_on_postgresql_refuses_naming_pg_dump(store: Storage, tmp_path: Path) -> None:
    """No half-measure: newsmon copies SQLite files; a PostgreSQL database is the server's
    to back up, and the message says with what (and never shows a password)."""
    if store.dialect != "postgresql":
        pytest.skip("the SQLite backup is test_backup_is_a_consistent_readable_copy")
    with pytest.raises(StorageError, match="pg_dump"):
        store.ops.backup(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    assert store.ops.integrity_check() == "ok" and store.ops.database_bytes() > 0
    assert store.ops.free_fraction() == 0.0
    store.ops.optimize(vacuum=True)  # ANALYZE / VACUUM outside a transaction


def test_a_clock_step_moves_stored_deadlines_back(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    next_poll = utcnow() + timedelta(hours=1)
    store.feeds.record_poll_failure(feed.id, kind="timeout", message="x", next_poll_at=next_poll)
    store.outbox.enqueue_notice("k", "t", "b", ["admin"])
    assert store.ops.shift_deadlines(600) == 2
    assert store.feeds.get(FEED_A).next_poll_at == to_second(next_poll) - timedelta(seconds=600)
