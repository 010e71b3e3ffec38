"""PostgreSQL storage (issue 15): the schema, its migration under concurrent starts, the
dialect translation, writers and delivery runs racing on one database, and the
password kept out of every message.

The shared behaviour of the repositories runs on both backends in the storage test
suite (``tests/helpers/storage.py``: ``BACKENDS``); this file holds what only
PostgreSQL has: several processes' connections at once, advisory and row locks.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config, secret_values
from monitor.errors import StorageError
from monitor.identity import alert_key, item_planner
from monitor.records import utcnow
from monitor.storage import SCHEMA_VERSION, Storage, StoreError, open_readonly, open_storage, schema
from monitor.storage.dialect import to_postgres
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert
from tests.helpers.postgres import PostgresServer
from tests.helpers.storage import FEED_A, count, make_item, processed, two_feeds

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


def concurrently(work: Callable[[int], Any], n: int) -> list[Any]:
    """Run ``work(i)`` for i in range(n) on n threads released together; results in order
    (an exception is returned as the result)."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # the caller asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# --- the dialect translation (pure) ---------------------------------------------------------


def test_sqlite_spellings_become_postgresql_ones() -> None:
    ignore = to_postgres("INSERT OR IGNORE INTO items (feed_id, guid) VALUES (?, ?)")
    assert ignore == "INSERT INTO items (feed_id, guid) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id"
    assert ignore.returns_id
    replace = to_postgres("INSERT OR REPLACE INTO stories (story_id, label, size) VALUES (?,?,?)")
    assert replace == ("INSERT INTO stories (story_id, label, size) VALUES (%s,%s,%s) ON CONFLICT"
                       " (story_id) DO UPDATE SET label = EXCLUDED.label, size = EXCLUDED.size")
    assert not replace.returns_id  # no id column there
    assert to_postgres("SELECT group_concat(DISTINCT m.topic) FROM m") == \
        "SELECT string_agg(DISTINCT m.topic, ',') FROM m"
    # A ? or % inside a literal is text, not a placeholder; every % is escaped for psycopg.
    assert to_postgres("SELECT '?', x FROM t WHERE a LIKE '%a' AND b = ?") == \
        "SELECT '?', x FROM t WHERE a LIKE '%%a' AND b = %s"
    assert to_postgres("INSERT INTO cycles (started_at) VALUES (?)", want_id=False) == \
        "INSERT INTO cycles (started_at) VALUES (%s)"


# --- the schema -----------------------------------------------------------------------------


def _sqlite_columns(tmp_path: Path) -> dict[str, set[str]]:
    open_storage(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'articles_fts%'")]
    out = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    conn.close()
    return out


def test_the_postgresql_schema_has_every_sqlite_table_and_column(url: str, tmp_path: Path) -> None:
    """Both dialects at SCHEMA_VERSION hold the same tables and columns (PostgreSQL's extra
    ``articles.search`` is its full-text document): a migration without its twin fails here."""
    store = open_storage(url)
    try:
        rows = store.db.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()").fetchall()
        assert store.ops.schema_version() == SCHEMA_VERSION
    finally:
        store.close()
    pg: dict[str, set[str]] = {}
    for table, column in rows:
        pg.setdefault(table, set()).add(column)
    pg["articles"].discard("search")
    assert pg == _sqlite_columns(tmp_path)


def test_processes_starting_together_migrate_once(url: str) -> None:
    """The poller, the workers and delivery start at once: one creates the schema under
    the advisory lock, the others wait and find it done."""
    stores = concurrently(lambda _i: open_storage(url), 6)
    try:
        assert all(isinstance(s, Storage) for s in stores), stores
        assert {s.ops.schema_version() for s in stores} == {SCHEMA_VERSION}
    finally:
        for s in stores:
            if isinstance(s, Storage):
                s.close()
    again = open_storage(url)  # idempotent: nothing to do, the data stays
    try:
        assert again.ops.schema_version() == SCHEMA_VERSION and count(again, "feeds") == 0
    finally:
        again.close()


def test_a_foreign_or_newer_database_is_refused(url: str, postgres_server: PostgresServer) -> None:
    store = open_storage(url)
    store.ops.set_meta(schema.PG_VERSION_KEY, str(SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(StoreError, match="newer than this newsmon"):
        open_storage(url)
    other = postgres_server.new_database()
    name = other.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE invoices (id int)", database=name)
    with pytest.raises(StoreError, match="not a newsmon database"):
        open_storage(other)
    with pytest.raises(StoreError, match="no newsmon database"):
        open_readonly(postgres_server.new_database())


def test_a_readonly_connection_refuses_writes(url: str) -> None:
    two_feeds(url).close()
    reader = open_readonly(url)
    try:
        assert reader.feeds.get(FEED_A).name == "A"  # reads work
        with pytest.raises(StoreError, match="not writable"):
            reader.ops.set_meta("daemon_pid", "1")
    finally:
        reader.close()


# --- writers racing ---------------------------------------------------------------------


def test_one_story_written_by_two_processes_at_once_is_one_article(url: str) -> None:
    """Two workers record the same story from two feeds at the same moment: the
    article lock makes the second see the first's article (no duplicate, no error)."""
    two_feeds(url).close()
    stores = [open_storage(url) for _ in range(4)]
    try:
        feed_id = stores[0].feeds.get(FEED_A).id
        item = make_item("same", "https://n.example/same")

        def write(i: int) -> Any:
            mine = make_item(f"guid-{i}", "https://n.example/same")
            return stores[i].items.record_item(
                feed_id, "A", processed(mine), article_key="url:https://n.example/same",
                plan=item_planner(processed(item).matches, lambda m: ["hook"]))

        results = concurrently(write, len(stores))
        assert all(not isinstance(r, Exception) for r in results), results
        assert sum(r.new_article for r in results) == 1
        assert len({r.article_id for r in results}) == 1
        assert (count(stores[0], "articles"), count(stores[0], "items"), count(stores[0], "alerts")) \
            == (1, 4, 1)
    finally:
        for s in stores:
            s.close()


def test_delivery_runs_never_claim_the_same_row(url: str) -> None:
    """Eight delivery runs on their own connections claim the same channels at once:
    each row is claimed by one run only, and a channel by one run at a time."""
    setup = open_storage(url)
    for n in range(40):
        add_alert(setup, f"ch{n % 4}")
    setup.close()
    stores = [open_storage(url) for _ in range(8)]
    lease = utcnow() + timedelta(minutes=5)
    try:
        def claim(i: int) -> list[tuple[str, int]]:
            got = []
            for channel in ("ch0", "ch1", "ch2", "ch3"):
                claimed = stores[i].outbox.claim_due(channel, f"run-{i}", lease_until=lease)
                got += [(channel, c.alert.id) for c in claimed or ()]
            return got

        results = concurrently(claim, len(stores))
        assert all(isinstance(r, list) for r in results), results
        rows = Counter(alert for got in results for _, alert in got)
        assert len(rows) == 40 and set(rows.values()) == {1}  # every row once, none twice
        owners: dict[str, set[int]] = {}
        for i, got in enumerate(results):
            for channel, _ in got:
                owners.setdefault(channel, set()).add(i)
        assert all(len(runs) == 1 for runs in owners.values()), owners  # a channel, one run
    finally:
        for s in stores:
            s.close()


def test_a_taken_over_claim_cannot_be_sent_by_its_old_owner(url: str) -> None:
    store, other = open_storage(url), open_storage(url)
    try:
        alert_id = add_alert(store, "hook")
        store.outbox.claim_due("hook", "old", lease_until=utcnow() - timedelta(seconds=1))
        taken = other.outbox.claim_due("hook", "new", lease_until=utcnow() + timedelta(minutes=5))
        assert taken is not None and [c.alert.id for c in taken] == [alert_id]
        assert not store.outbox.begin_send([alert_id], "old", lease_until=utcnow() + timedelta(60))
        assert other.outbox.begin_send([alert_id], "new", lease_until=utcnow() + timedelta(60))
        other.outbox.mark_delivered("hook", [alert_id], kind="alert")
        assert store.outbox.counts() == {"sent": 1}
        assert alert_key(1, "ceasefire", "hook")  # keys stay those of identity (not storage's)
    finally:
        store.close()
        other.close()


# --- the password ---------------------------------------------------------------------------

PASSWORD = "s3cret-Pg-passw0rd"


def test_a_password_in_the_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    from monitor.config import load_config
    from monitor.errors import ConfigError

    path = tmp_path / "newsmon.yaml"
    path.write_text(f"database: postgresql://newsmon:{PASSWORD}@127.0.0.1:5432/newsmon\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert PASSWORD not in text and "NEWSMON_DATABASE_PASSWORD" in text
    assert "newsmon.yaml" in text and "database" in text
    path.write_text("database: postgresql://newsmon@127.0.0.1:notaport/newsmon\n")
    with pytest.raises(ConfigError, match="port"):
        load_config(path)
    path.write_text("database: mysql://x@127.0.0.1/newsmon\n")
    with pytest.raises(ConfigError, match="postgresql://"):
        load_config(path)


def test_the_password_reaches_no_message_or_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                make_config: ConfigFactory,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """The password comes from the environment; a failed connection, the status line and
    the log redaction list all keep it out of sight."""
    from tests.helpers.loopback import free_port

    monkeypatch.setenv("NEWSMON_DATABASE_PASSWORD", PASSWORD)
    closed = f"postgresql://newsmon@127.0.0.1:{free_port()}/newsmon"  # nothing listens there
    with pytest.raises(StorageError) as caught:
        open_storage(closed)
    assert PASSWORD not in str(caught.value) and "cannot reach" in str(caught.value)
    assert PASSWORD not in repr(caught.value.__cause__) and caught.value.__cause__ is None
    config: Config = make_config.load(database=closed)
    assert config.is_postgres and PASSWORD not in config.database_label()
    assert PASSWORD in secret_values(config)  # handed to the log redaction filter
    with pytest.raises(StorageError, match="PostgreSQL URL"):
        config.database_path()  # a SQLite-only operation says so
    from monitor.storage.postgres import _store_error

    leaked = _store_error("x", RuntimeError(f"failed for postgresql://u:{PASSWORD}@h/db ({PASSWORD})"))
    assert PASSWORD not in str(leaked)
    assert PASSWORD not in caplog.text


def test_the_environment_password_is_used(postgres_server: PostgresServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A role the server asks a password of (scram over loopback, for that role only):
    the environment's password opens it, a wrong one is refused without being shown."""
    url = postgres_server.new_database()
    name = url.rsplit("/", 1)[1]
    role = f"pw_{name[-8:]}"
    postgres_server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    postgres_server.psql(f'GRANT ALL ON DATABASE "{name}" TO {role}')
    postgres_server.psql(f"GRANT ALL ON SCHEMA public TO {role}", database=name)
    hba = postgres_server.data / "pg_hba.conf"
    rules = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{rules}")
    postgres_server.psql("SELECT pg_reload_conf()")
    try:
        role_url = f"postgresql://{role}@127.0.0.1:{postgres_server.port}/{name}"
        monkeypatch.setenv("NEWSMON_DATABASE_PASSWORD", "wrong-" + PASSWORD)
        with pytest.raises(StorageError, match="password authentication failed") as caught:
            open_storage(role_url)
        assert PASSWORD not in str(caught.value)
        monkeypatch.setenv("NEWSMON_DATABASE_PASSWORD", PASSWORD)
        store = open_storage(role_url)
        try:
            assert store.ops.schema_version() == SCHEMA_VERSION and PASSWORD not in store.label
        finally:
            store.close()
    finally:
        hba.write_text(rules)
        postgres_server.psql("SELECT pg_reload_conf()")
