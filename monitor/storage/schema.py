"""The schema: append-only migrations, each upgrading the database by one version.

Tables
  feeds          one row per configured feed, with its poll state and health
  items          one row per (feed, guid): what a feed published, first seen when
  articles       one row per story (``monitor.identity.article_key``)
  matches        one row per (article, topic) with its evidence
  alerts         the outbox: one row per (match, channel) until delivered, and notices;
                 a row being sent carries its claim (owner, lease expiry)
  deliveries     one row per message sent
  channel_state  per-channel backoff, Retry-After and health (failing since, notified)
  cycles         one row per poll cycle (for ``newsmon status``)
  meta           daemon facts (start, pid, stop)

A new table or column: append a migration to ``MIGRATIONS`` (never edit a
released one); ``tests/test_migrations.py`` upgrades a v1 database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlite_utils import Database

from monitor.storage.db import StoreError


def _migration_1(db: Database) -> None:
    """The first schema."""
    db.table("feeds").create(
        {
            "id": int, "url": str, "name": str, "tags": str, "enabled": int,
            "etag": str, "last_modified": str, "body_hash": str,
            "last_poll_at": str, "last_success_at": str, "last_error": str,
            "last_error_kind": str, "last_error_at": str, "consecutive_failures": int,
            "failing_since": str, "next_poll_at": str, "items_total": int,
            "items_per_day": float, "health_state": str, "created_at": str,
        },
        pk="id", not_null={"url"}, defaults={"consecutive_failures": 0, "items_total": 0,
                                             "enabled": 1, "health_state": "ok"},
    )
    db.table("feeds").create_index(["url"], unique=True)
    db.table("articles").create(
        {
            "id": int, "dedup_key": str, "canonical_url": str, "content_hash": str,
            "url": str, "title": str, "summary": str, "body": str, "text_source": str,
            "language": str, "author": str, "published": str, "page_error": str,
            "first_feed_id": int, "first_seen": str, "body_pruned": int,
        },
        pk="id", not_null={"dedup_key"}, defaults={"body_pruned": 0},
        foreign_keys=[("first_feed_id", "feeds", "id")],
    )
    db.table("articles").create_index(["dedup_key"], unique=True)
    db.table("items").create(
        {
            "id": int, "feed_id": int, "guid": str, "link": str, "canonical_url": str,
            "title": str, "published": str, "first_seen": str, "content_hash": str,
            "article_id": int,
        },
        pk="id", not_null={"feed_id", "guid"},
        foreign_keys=[("feed_id", "feeds", "id"), ("article_id", "articles", "id")],
    )
    db.table("items").create_index(["feed_id", "guid"], unique=True)
    db.table("items").create_index(["feed_id", "content_hash"])
    db.table("matches").create(
        {
            "id": int, "article_id": int, "topic": str, "score": float, "threshold": float,
            "severity": str, "terms": str, "hits": str, "evidence": str, "created_at": str,
        },
        pk="id", foreign_keys=[("article_id", "articles", "id")],
    )
    db.table("matches").create_index(["article_id", "topic"], unique=True)
    db.table("matches").create_index(["topic", "created_at"])
    db.table("alerts").create(
        {
            "id": int, "alert_key": str, "match_id": int, "article_id": int, "channel": str,
            "topic": str, "severity": str, "title": str, "url": str, "source": str,
            "published": str, "score": float, "threshold": float, "terms": str,
            "evidence": str, "kind": str, "body": str, "status": str, "attempts": int,
            "next_attempt_at": str, "last_error": str, "created_at": str, "sent_at": str,
        },
        pk="id", not_null={"alert_key", "channel", "status"},
        defaults={"attempts": 0, "status": "pending", "kind": "match"},
        foreign_keys=[("match_id", "matches", "id"), ("article_id", "articles", "id")],
    )
    db.table("alerts").create_index(["alert_key"], unique=True)
    db.table("alerts").create_index(["status", "next_attempt_at"])
    db.table("cycles").create(
        {
            "id": int, "started_at": str, "finished_at": str, "feeds_ok": int,
            "feeds_failed": int, "items_new": int, "matches": int, "alerts": int,
            "error": str,
        },
        pk="id",
    )
    db.table("meta").create({"key": str, "value": str}, pk="key")


def _migration_2(db: Database) -> None:
    """Polling policy and feed health: the chosen interval and why, the last new
    item, the health state's start, the GUID-churn breaker; an index for rates."""
    feeds = db.table("feeds")
    feeds.add_column("poll_interval", float)
    feeds.add_column("poll_reason", str)
    feeds.add_column("last_new_at", str)
    feeds.add_column("health_since", str)
    feeds.add_column("churn_streak", int, not_null_default=0)
    feeds.add_column("alerts_held_since", str)
    feeds.add_column("ttl_minutes", int)
    db.table("items").create_index(["feed_id", "first_seen"], if_not_exists=True)


def _migration_3(db: Database) -> None:
    """Delivery: why an alert waits (``held``: digest, quiet, throttle), the message
    that carried it; one row per message sent (throttle, rate limit, ``newsmon
    alerts``); per-channel backoff and Retry-After state."""
    db.table("alerts").add_column("held", str)
    db.table("alerts").add_column("delivery_id", int)
    db.table("alerts").create_index(["channel", "status", "next_attempt_at"], if_not_exists=True)
    db.table("deliveries").create(
        {"id": int, "channel": str, "kind": str, "alerts": int, "sent_at": str},
        pk="id", not_null={"channel", "sent_at"},
    )
    db.table("deliveries").create_index(["channel", "sent_at"])
    db.table("channel_state").create(
        {"channel": str, "failures": int, "blocked_until": str, "last_error": str,
         "last_sent_at": str},
        pk="channel", defaults={"failures": 0},
    )


def _migration_4(db: Database) -> None:
    """Delivery claims and channel health: an outbox row is claimed (owner, lease
    expiry) before it is sent and marked in flight while it is; the cause of its
    last failure; per channel the first failure of the current run of failures,
    the last failure, and whether its failing notice went out."""
    alerts = db.table("alerts")
    alerts.add_column("claimed_by", str)
    alerts.add_column("claimed_until", str)
    alerts.add_column("sending_since", str)
    state = db.table("channel_state")
    state.add_column("failing_since", str)
    state.add_column("last_failure_at", str)
    state.add_column("failing_notified", int, not_null_default=0)
    alerts.create_index(["channel", "claimed_by"], if_not_exists=True)


def _migration_search_index(db: Database) -> None:
    """Full-text search over article titles, summaries and bodies (``storage/search.py``):
    an FTS5 index over ``articles`` (external content: the text is not stored twice),
    filled for the articles already stored. ``record_item`` adds each new article in
    the item's transaction; the triggers keep the index right when a body is pruned
    or an article deleted (an external-content index must be given the old text)."""
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS articles_fts USING fts5(title, summary, body,"
        " content='articles', content_rowid='id',"
        " tokenize='porter unicode61 remove_diacritics 2')")
    db.execute("INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')")
    old = "'delete', old.id, old.title, old.summary, old.body"
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS articles_fts_update AFTER UPDATE OF title, summary, body"
        f" ON articles BEGIN INSERT INTO articles_fts (articles_fts, rowid, title, summary, body)"
        f" VALUES ({old}); INSERT INTO articles_fts (rowid, title, summary, body)"
        " VALUES (new.id, new.title, new.summary, new.body); END")
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS articles_fts_delete AFTER DELETE ON articles BEGIN"
        f" INSERT INTO articles_fts (articles_fts, rowid, title, summary, body) VALUES ({old});"
        " END")
    db.table("articles").create_index(["first_seen"], if_not_exists=True)


def _migration_feedback(db: Database) -> None:
    """Analyst feedback from the web workspace (``storage/feedback.py``): one row per
    verdict on an article, or on one of its topics, or on one alert."""
    db.table("feedback").create(
        {"id": int, "article_id": int, "topic": str, "alert_id": int, "verdict": str,
         "note": str, "source": str, "created_at": str},
        pk="id", not_null={"article_id", "verdict", "created_at"},
        foreign_keys=[("article_id", "articles", "id")],
    )
    db.table("feedback").create_index(["article_id", "topic"])


def _migration_stories(db: Database) -> None:
    """Story clustering (``storage/stories.py``): stories, each article's story features
    and assignment, the postings of the assignment window, document frequencies; the
    story an outbox row belongs to (``alerts.story_id``)."""
    db.execute(
        "CREATE TABLE stories (story_id TEXT PRIMARY KEY, label TEXT NOT NULL, label_article_id TEXT,"
        " first_seen REAL NOT NULL, last_seen REAL NOT NULL, member_ids TEXT NOT NULL, outlets TEXT NOT NULL,"
        " centroid TEXT NOT NULL, centroid_norm REAL NOT NULL, size INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE INDEX idx_stories_last_seen ON stories (last_seen)")
    db.execute(
        "CREATE TABLE story_articles (article_key TEXT PRIMARY KEY, story_id TEXT NOT NULL,"
        " event_time REAL NOT NULL, headline TEXT, source TEXT, vector TEXT NOT NULL, exact TEXT,"
        " sample BLOB, words INTEGER, wire_credit INTEGER, is_new_story INTEGER, similarity REAL,"
        " near_dup_of TEXT, duplicated_by TEXT, exact_duplicate INTEGER, new_outlet INTEGER,"
        " label_changed INTEGER, outlets_after INTEGER NOT NULL DEFAULT 0)")
    db.execute("CREATE INDEX idx_story_articles_story ON story_articles (story_id, event_time)")
    db.execute("CREATE INDEX idx_story_articles_time ON story_articles (event_time)")
    db.execute(
        "CREATE TABLE story_postings (term TEXT NOT NULL, event_time REAL NOT NULL,"
        " article_key TEXT NOT NULL, PRIMARY KEY (term, event_time, article_key)) WITHOUT ROWID")
    db.execute("CREATE INDEX idx_story_postings_time ON story_postings (event_time)")
    db.execute("CREATE TABLE story_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE story_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.table("alerts").add_column("story_id", str)


_WEB_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_items_article_id ON items (article_id)",
    "CREATE INDEX IF NOT EXISTS idx_alerts_article_id ON alerts (article_id)",
    "CREATE INDEX IF NOT EXISTS idx_alerts_story_id ON alerts (story_id)",
)


def _migration_web_indexes(db: Any) -> None:
    """Lookups by article and story (the web workspace's article, story and search
    pages, the Atom feeds): an article's items and alerts, a story's alerts, without
    scanning the tables. Idempotent; the same statements serve PostgreSQL (its twin)."""
    for statement in _WEB_INDEXES:
        db.execute(statement)


# Append-only: each entry upgrades the schema by one version, in a transaction.
MIGRATIONS: list[Callable[[Database], None]] = [_migration_1, _migration_2, _migration_3,
                                                _migration_4, _migration_search_index,
                                                _migration_feedback, _migration_stories,
                                                _migration_web_indexes]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: Database) -> int:
    """Run pending migrations, each in its own transaction. Returns the version.

    A PostgreSQL database (``storage.postgres.PgDatabase``) takes the PostgreSQL path
    (``migrate_postgres``): the same versions, its own DDL."""
    if getattr(db, "dialect", None) == "postgresql":
        return migrate_postgres(db)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this newsmon ({SCHEMA_VERSION});"
            " upgrade newsmon or restore a backup"
        )
    while version < SCHEMA_VERSION:
        with db.atomic():
            MIGRATIONS[version](db)
            version += 1
            db.execute(f"PRAGMA user_version = {version}")
    return version


# --- PostgreSQL ---------------------------------------------------------------------------
# A PostgreSQL database starts at the schema of ``PG_BASELINE_VERSION`` in one step (there
# were no PostgreSQL databases before it); each later migration appends its PostgreSQL
# twin to ``PG_MIGRATIONS``, so both dialects always reach ``SCHEMA_VERSION`` (checked
# below, and by tests/test_postgres_storage.py, which compares the two schemas' columns).
# The version lives in ``meta`` (key ``schema_version``): PostgreSQL has no user_version.
# Text columns collate "C": ISO timestamps and ``alert_key`` ranges compare byte-wise, as
# in SQLite, whatever the database's locale. SQLite's REAL is 8 bytes: DOUBLE PRECISION.

PG_BASELINE_VERSION = 7
PG_VERSION_KEY = "schema_version"
PG_LOCK_ID = 0x6E6577736D6F6E  # "newsmon": one migrating process at a time (advisory lock)
_T = 'TEXT COLLATE "C"'
_ID = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
# The search document: title weighs most, then summary, then body (FTS5's bm25 weights 10:3:1);
# English stemming as FTS5's porter tokenizer. Generated: filled by the article's own INSERT,
# right after a body is pruned, gone with the row.
_SEARCH_DOCUMENT = ("setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||"
                    " setweight(to_tsvector('english'::regconfig, coalesce(summary, '')), 'B') ||"
                    " setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'D')")

PG_BASELINE_DDL = f"""
CREATE TABLE feeds (
  id {_ID}, url {_T} NOT NULL, name {_T}, tags {_T}, enabled BIGINT DEFAULT 1, etag {_T},
  last_modified {_T}, body_hash {_T}, last_poll_at {_T}, last_success_at {_T}, last_error {_T},
  last_error_kind {_T}, last_error_at {_T}, consecutive_failures BIGINT DEFAULT 0,
  failing_since {_T}, next_poll_at {_T}, items_total BIGINT DEFAULT 0,
  items_per_day DOUBLE PRECISION, health_state {_T} DEFAULT 'ok', created_at {_T},
  poll_interval DOUBLE PRECISION, poll_reason {_T}, last_new_at {_T}, health_since {_T},
  churn_streak BIGINT NOT NULL DEFAULT 0, alerts_held_since {_T}, ttl_minutes BIGINT);
CREATE UNIQUE INDEX idx_feeds_url ON feeds (url);
CREATE TABLE articles (
  id {_ID}, dedup_key {_T} NOT NULL, canonical_url {_T}, content_hash {_T}, url {_T}, title {_T},
  summary {_T}, body {_T}, text_source {_T}, language {_T}, author {_T}, published {_T},
  page_error {_T}, first_feed_id BIGINT REFERENCES feeds (id), first_seen {_T},
  body_pruned BIGINT DEFAULT 0,
  search tsvector GENERATED ALWAYS AS ({_SEARCH_DOCUMENT}) STORED);
CREATE UNIQUE INDEX idx_articles_dedup_key ON articles (dedup_key);
CREATE INDEX idx_articles_first_seen ON articles (first_seen);
CREATE INDEX idx_articles_search ON articles USING GIN (search);
CREATE TABLE items (
  id {_ID}, feed_id BIGINT NOT NULL REFERENCES feeds (id), guid {_T} NOT NULL, link {_T},
  canonical_url {_T}, title {_T}, published {_T}, first_seen {_T}, content_hash {_T},
  article_id BIGINT REFERENCES articles (id));
CREATE UNIQUE INDEX idx_items_feed_id_guid ON items (feed_id, guid);
CREATE INDEX idx_items_feed_id_content_hash ON items (feed_id, content_hash);
CREATE INDEX idx_items_feed_id_first_seen ON items (feed_id, first_seen);
CREATE TABLE matches (
  id {_ID}, article_id BIGINT REFERENCES articles (id), topic {_T}, score DOUBLE PRECISION,
  threshold DOUBLE PRECISION, severity {_T}, terms {_T}, hits {_T}, evidence {_T},
  created_at {_T});
CREATE UNIQUE INDEX idx_matches_article_id_topic ON matches (article_id, topic);
CREATE INDEX idx_matches_topic_created_at ON matches (topic, created_at);
CREATE TABLE alerts (
  id {_ID}, alert_key {_T} NOT NULL, match_id BIGINT REFERENCES matches (id),
  article_id BIGINT REFERENCES articles (id), channel {_T} NOT NULL, topic {_T}, severity {_T},
  title {_T}, url {_T}, source {_T}, published {_T}, score DOUBLE PRECISION,
  threshold DOUBLE PRECISION, terms {_T}, evidence {_T}, kind {_T} DEFAULT 'match', body {_T},
  status {_T} NOT NULL DEFAULT 'pending', attempts BIGINT DEFAULT 0, next_attempt_at {_T},
  last_error {_T}, created_at {_T}, sent_at {_T}, held {_T}, delivery_id BIGINT,
  claimed_by {_T}, claimed_until {_T}, sending_since {_T}, story_id {_T});
CREATE UNIQUE INDEX idx_alerts_alert_key ON alerts (alert_key);
CREATE INDEX idx_alerts_status_next_attempt_at ON alerts (status, next_attempt_at);
CREATE INDEX idx_alerts_channel_status_next_attempt_at ON alerts (channel, status, next_attempt_at);
CREATE INDEX idx_alerts_channel_claimed_by ON alerts (channel, claimed_by);
CREATE TABLE deliveries (
  id {_ID}, channel {_T} NOT NULL, kind {_T}, alerts BIGINT, sent_at {_T} NOT NULL);
CREATE INDEX idx_deliveries_channel_sent_at ON deliveries (channel, sent_at);
CREATE TABLE channel_state (
  channel {_T} PRIMARY KEY, failures BIGINT DEFAULT 0, blocked_until {_T}, last_error {_T},
  last_sent_at {_T}, failing_since {_T}, last_failure_at {_T},
  failing_notified BIGINT NOT NULL DEFAULT 0);
CREATE TABLE cycles (
  id {_ID}, started_at {_T}, finished_at {_T}, feeds_ok BIGINT, feeds_failed BIGINT,
  items_new BIGINT, matches BIGINT, alerts BIGINT, error {_T});
CREATE TABLE feedback (
  id {_ID}, article_id BIGINT NOT NULL REFERENCES articles (id), topic {_T}, alert_id BIGINT,
  verdict {_T} NOT NULL, note {_T}, source {_T}, created_at {_T} NOT NULL);
CREATE INDEX idx_feedback_article_id_topic ON feedback (article_id, topic);
CREATE TABLE stories (
  story_id {_T} PRIMARY KEY, label {_T} NOT NULL, label_article_id {_T},
  first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
  member_ids {_T} NOT NULL, outlets {_T} NOT NULL, centroid {_T} NOT NULL,
  centroid_norm DOUBLE PRECISION NOT NULL, size BIGINT NOT NULL DEFAULT 0);
CREATE INDEX idx_stories_last_seen ON stories (last_seen);
CREATE TABLE story_articles (
  article_key {_T} PRIMARY KEY, story_id {_T} NOT NULL, event_time DOUBLE PRECISION NOT NULL,
  headline {_T}, source {_T}, vector {_T} NOT NULL, exact {_T}, sample BYTEA, words BIGINT,
  wire_credit BIGINT, is_new_story BIGINT, similarity DOUBLE PRECISION, near_dup_of {_T},
  duplicated_by {_T}, exact_duplicate BIGINT, new_outlet BIGINT, label_changed BIGINT,
  outlets_after BIGINT NOT NULL DEFAULT 0);
CREATE INDEX idx_story_articles_story ON story_articles (story_id, event_time);
CREATE INDEX idx_story_articles_time ON story_articles (event_time);
CREATE TABLE story_postings (
  term {_T} NOT NULL, event_time DOUBLE PRECISION NOT NULL, article_key {_T} NOT NULL,
  PRIMARY KEY (term, event_time, article_key));
CREATE INDEX idx_story_postings_time ON story_postings (event_time);
CREATE TABLE story_terms (term {_T} PRIMARY KEY, df BIGINT NOT NULL);
CREATE TABLE story_counters (name {_T} PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE meta (key {_T} PRIMARY KEY, value {_T});
"""

# Append-only, as MIGRATIONS: entry i upgrades a PostgreSQL database from version
# PG_BASELINE_VERSION + i to the next. Each takes a ``PgDatabase``.
PG_MIGRATIONS: list[Callable[[Any], None]] = [_migration_web_indexes]
assert PG_BASELINE_VERSION + len(PG_MIGRATIONS) == SCHEMA_VERSION, \
    "a migration was added without its PostgreSQL twin (schema.PG_MIGRATIONS)"


def _pg_version(db: Any) -> int:
    """The stored version; 0 for an empty database. Refuses another program's tables."""
    tables = {r[0] for r in db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    if "meta" not in tables:
        if tables:
            raise StoreError(f"the PostgreSQL database is not a newsmon database (tables:"
                             f" {', '.join(sorted(tables)[:8])}): refusing to use it")
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PG_VERSION_KEY,)).fetchone()
    if row is None or not str(row[0]).isdigit():
        raise StoreError("the PostgreSQL database has a meta table but no newsmon schema version:"
                         " refusing to use it")
    return int(row[0])


def pg_schema_version(db: Any) -> int:
    """The schema version a PostgreSQL database records (0: none yet)."""
    return _pg_version(db)


def migrate_postgres(db: Any) -> int:
    """Bring a PostgreSQL database (``storage.postgres.PgDatabase``) to ``SCHEMA_VERSION``.

    One transaction, under an advisory lock: processes starting together (the poller,
    workers, delivery) wait for the first, then find the schema done. Idempotent."""
    with db.atomic():
        db.execute("SELECT pg_advisory_xact_lock(?)", (PG_LOCK_ID,))
        version = _pg_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this newsmon ({SCHEMA_VERSION});"
                " upgrade newsmon or restore a backup")
        if version == 0:
            db.run_script(PG_BASELINE_DDL)
            version = PG_BASELINE_VERSION
        while version < SCHEMA_VERSION:
            PG_MIGRATIONS[version - PG_BASELINE_VERSION](db)
            version += 1
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                   " SET value = excluded.value", (PG_VERSION_KEY, str(version)))
    return version
