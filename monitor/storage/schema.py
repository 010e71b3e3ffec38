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


# Append-only: each entry upgrades the schema by one version, in a transaction.
MIGRATIONS: list[Callable[[Database], None]] = [_migration_1, _migration_2, _migration_3,
                                                _migration_4, _migration_search_index,
                                                _migration_feedback, _migration_stories]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: Database) -> int:
    """Run pending migrations, each in its own transaction. Returns the version."""
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
