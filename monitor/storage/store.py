"""The store stage: everything lands in one SQLite file (sqlite-utils, WAL).

Tables
  feeds     one row per configured feed, with its poll state and health
  items     one row per (feed, guid): what a feed published, first seen when
  articles  one row per story (dedup key: canonical URL, else content hash)
  matches   one row per (article, topic) with its evidence
  alerts    the outbox: one row per (match, channel) until delivered
  cycles    one row per poll cycle (for ``newsmon status``)

An item, its article, its matches and its pending alerts are written in one
transaction (``record_item``), so a crash never leaves a match without its
alert nor an item marked seen that was not processed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from monitor.models import (
    EvidenceSentence,
    FeedItem,
    PendingAlert,
    ProcessedArticle,
    TopicMatch,
)

BUSY_TIMEOUT_S = 10.0
NOTICE_TOPIC = "_newsmon"  # the topic of daemon-health notices in the outbox


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# --- schema and migrations ----------------------------------------------------


def _migration_1(db: Database) -> None:
    """The first schema."""
    db["feeds"].create(
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
    db["feeds"].create_index(["url"], unique=True)
    db["articles"].create(
        {
            "id": int, "dedup_key": str, "canonical_url": str, "content_hash": str,
            "url": str, "title": str, "summary": str, "body": str, "text_source": str,
            "language": str, "author": str, "published": str, "page_error": str,
            "first_feed_id": int, "first_seen": str, "body_pruned": int,
        },
        pk="id", not_null={"dedup_key"}, defaults={"body_pruned": 0},
        foreign_keys=[("first_feed_id", "feeds", "id")],
    )
    db["articles"].create_index(["dedup_key"], unique=True)
    db["items"].create(
        {
            "id": int, "feed_id": int, "guid": str, "link": str, "canonical_url": str,
            "title": str, "published": str, "first_seen": str, "content_hash": str,
            "article_id": int,
        },
        pk="id", not_null={"feed_id", "guid"},
        foreign_keys=[("feed_id", "feeds", "id"), ("article_id", "articles", "id")],
    )
    db["items"].create_index(["feed_id", "guid"], unique=True)
    db["items"].create_index(["feed_id", "content_hash"])
    db["matches"].create(
        {
            "id": int, "article_id": int, "topic": str, "score": float, "threshold": float,
            "severity": str, "terms": str, "hits": str, "evidence": str, "created_at": str,
        },
        pk="id", foreign_keys=[("article_id", "articles", "id")],
    )
    db["matches"].create_index(["article_id", "topic"], unique=True)
    db["matches"].create_index(["topic", "created_at"])
    db["alerts"].create(
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
    db["alerts"].create_index(["alert_key"], unique=True)
    db["alerts"].create_index(["status", "next_attempt_at"])
    db["cycles"].create(
        {
            "id": int, "started_at": str, "finished_at": str, "feeds_ok": int,
            "feeds_failed": int, "items_new": int, "matches": int, "alerts": int,
            "error": str,
        },
        pk="id",
    )
    db["meta"].create({"key": str, "value": str}, pk="key")


def _migration_2(db: Database) -> None:
    """Polling policy and feed health: the chosen interval and why, the last new
    item, the health state's start, the GUID-churn breaker; an index for rates."""
    feeds = db["feeds"]
    feeds.add_column("poll_interval", float)
    feeds.add_column("poll_reason", str)
    feeds.add_column("last_new_at", str)
    feeds.add_column("health_since", str)
    feeds.add_column("churn_streak", int, not_null_default=0)
    feeds.add_column("alerts_held_since", str)
    feeds.add_column("ttl_minutes", int)
    db["items"].create_index(["feed_id", "first_seen"], if_not_exists=True)


def _migration_3(db: Database) -> None:
    """Delivery: why an alert waits (``held``: digest, quiet, throttle), the message
    that carried it; one row per message sent (throttle, rate limit, ``newsmon
    alerts``); per-channel backoff and Retry-After state."""
    db["alerts"].add_column("held", str)
    db["alerts"].add_column("delivery_id", int)
    db["alerts"].create_index(["channel", "status", "next_attempt_at"], if_not_exists=True)
    db["deliveries"].create(
        {"id": int, "channel": str, "kind": str, "alerts": int, "sent_at": str},
        pk="id", not_null={"channel", "sent_at"},
    )
    db["deliveries"].create_index(["channel", "sent_at"])
    db["channel_state"].create(
        {"channel": str, "failures": int, "blocked_until": str, "last_error": str,
         "last_sent_at": str},
        pk="channel", defaults={"failures": 0},
    )


# Append-only: each entry upgrades the schema by one version, in a transaction.
MIGRATIONS: list[Callable[[Database], None]] = [_migration_1, _migration_2, _migration_3]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A database failure (locked, disk full, corrupt), with a clear message."""


def connect(path: Path, *, readonly: bool = False) -> Database:
    """Open (and create or upgrade) the database at ``path``.

    ``readonly`` opens an existing file without creating, migrating or writing
    it (``newsmon status`` next to a running daemon, or an older daemon).
    """
    path = Path(path)
    if readonly:
        if not path.exists():
            raise sqlite3.OperationalError(f"no database at {path}")
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        return Database(conn)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged commit (the outbox row) survives power loss; the
    # daemon's write rate makes the cost (~0.3 ms a commit) irrelevant.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    db = Database(conn)
    migrate(db)
    return db


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


@contextmanager
def _errors(action: str) -> Iterator[None]:
    """Turn sqlite errors into StoreError with a message an operator can act on."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise StoreError(f"{action}: database is locked by another process ({text})") from exc
        if "full" in text:
            raise StoreError(f"{action}: database or disk is full ({text})") from exc
        if "readonly" in text or "read-only" in text:
            raise StoreError(f"{action}: the database file is not writable ({text})") from exc
        raise StoreError(f"{action}: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{action}: {exc}") from exc


# --- values -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedState:
    id: int
    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    consecutive_failures: int
    last_success_at: datetime | None
    next_poll_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """Which channel a match goes to (decided by routing before the write)."""

    channel: str


@dataclass(frozen=True, slots=True)
class RecordResult:
    article_id: int
    new_article: bool
    match_ids: tuple[int, ...]
    alert_ids: tuple[int, ...]


def _evidence_json(evidence: Sequence[EvidenceSentence]) -> str:
    return json.dumps([asdict(e) for e in evidence], ensure_ascii=False)


def _evidence_from_json(text: str | None) -> tuple[EvidenceSentence, ...]:
    if not text:
        return ()
    return tuple(
        EvidenceSentence(field=e["field"], text=e["text"], marked=e["marked"],
                         terms=tuple(e.get("terms", ())))
        for e in json.loads(text)
    )


# --- the store ------------------------------------------------------------------


class Store:
    """All reads and writes the pipeline needs. One instance per thread of use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with _errors(f"opening {self.path}"):
            self.db = connect(self.path)

    @contextmanager
    def _write(self) -> Iterator[None]:
        """A write transaction that takes SQLite's write lock up front.

        A deferred ``BEGIN`` that reads before it writes fails at once with
        "database is locked" when another connection (the delivery thread, a
        ``newsmon`` command) commits in between: the busy timeout does not cover
        a lock upgrade. ``BEGIN IMMEDIATE`` waits for the lock instead. Nested
        use becomes a savepoint.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    # feeds ----------------------------------------------------------------
    def sync_feeds(self, feeds: Iterable[tuple[str, str | None, Sequence[str]]]) -> None:
        """Make sure every configured feed has a row; mark the others disabled."""
        now = iso(utcnow())
        with _errors("saving feeds"), self._write():
            urls = []
            for url, name, tags in feeds:
                urls.append(url)
                self.db.execute(
                    "INSERT INTO feeds (url, name, tags, enabled, created_at) VALUES (?, ?, ?, 1, ?)"
                    " ON CONFLICT(url) DO UPDATE SET name = excluded.name, tags = excluded.tags,"
                    " enabled = 1",
                    (url, name, json.dumps(list(tags)), now),
                )
            marks = ",".join("?" * len(urls))
            self.db.execute(
                f"UPDATE feeds SET enabled = 0 WHERE url NOT IN ({marks})" if urls
                else "UPDATE feeds SET enabled = 0",
                urls,
            )

    def feed_state(self, url: str) -> FeedState:
        with _errors(f"reading feed {url}"):
            row = self.db.execute(
                "SELECT id, url, etag, last_modified, body_hash, consecutive_failures,"
                " last_success_at, next_poll_at FROM feeds WHERE url = ?", (url,),
            ).fetchone()
        if row is None:
            self.sync_feeds([(url, None, ())])
            return self.feed_state(url)
        return FeedState(row[0], row[1], row[2], row[3], row[4], row[5] or 0,
                         parse_iso(row[6]), parse_iso(row[7]))

    def feed_row(self, url: str) -> dict[str, Any]:
        """The feed's whole row (poll state, schedule and health), created if missing."""
        with _errors(f"reading feed {url}"):
            rows = list(self.db.query("SELECT * FROM feeds WHERE url = ?", (url,)))
        if not rows:
            self.sync_feeds([(url, None, ())])
            return self.feed_row(url)
        return rows[0]

    @contextmanager
    def _lazy_commit(self) -> Iterator[None]:
        """Commit without waiting for the disk (``synchronous=NORMAL``) for writes
        that are cheap to lose: a feed's poll state. In WAL mode the commit stays
        atomic and ordered; a power cut may only forget it (the feed is polled
        again). Alerts and items keep ``FULL``. Saves an fsync (~2 ms) per poll:
        most of an all-304 cycle."""
        if self.db.conn.in_transaction:
            yield  # inside someone's transaction: their commit decides
            return
        previous = self.db.execute("PRAGMA synchronous").fetchone()[0]
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA synchronous={int(previous)}")

    def record_poll_success(
        self, feed_id: int, *, etag: str | None, last_modified: str | None,
        body_hash: str | None, new_items: int, next_poll_at: datetime | None = None,
        interval: float | None = None, reason: str | None = None,
        items_per_day: float | None = None, last_new_at: datetime | None = None,
        churn_streak: int | None = None, ttl_minutes: int | None = None,
    ) -> None:
        """A successful poll: validators, schedule, and the counters that changed.

        ``items_per_day``/``last_new_at``/``churn_streak`` are written only when
        given (None keeps the stored value), so a 304 costs one small UPDATE.
        """
        now = iso(utcnow())
        sets = ["etag = ?", "last_modified = ?", "body_hash = ?", "last_poll_at = ?",
                "last_success_at = ?", "consecutive_failures = 0", "failing_since = NULL",
                "next_poll_at = ?", "items_total = items_total + ?", "poll_interval = ?",
                "poll_reason = ?"]
        params: list[Any] = [etag, last_modified, body_hash, now, now, iso(next_poll_at),
                             new_items, interval, reason]
        optional = {"items_per_day": items_per_day, "last_new_at": iso(last_new_at),
                    "churn_streak": churn_streak, "ttl_minutes": ttl_minutes}
        for column, value in optional.items():
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        with _errors("saving poll state"), self._lazy_commit(), self._write():
            self.db.execute(f"UPDATE feeds SET {', '.join(sets)} WHERE id = ?", [*params, feed_id])

    def record_poll_failure(
        self, feed_id: int, *, kind: str, message: str, next_poll_at: datetime | None = None,
        counted: bool = True, interval: float | None = None, reason: str | None = None,
    ) -> None:
        """A failed poll. ``counted=False`` (the whole network was down) records the
        error and the retry time but neither adds to ``consecutive_failures`` nor
        starts ``failing_since``: the feed itself is not to blame."""
        now = iso(utcnow())
        count = 1 if counted else 0
        with _errors("saving poll error"), self._lazy_commit(), self._write():
            self.db.execute(
                "UPDATE feeds SET last_poll_at = ?, last_error = ?, last_error_kind = ?,"
                " last_error_at = ?, consecutive_failures = consecutive_failures + ?,"
                " failing_since = CASE WHEN ? THEN COALESCE(failing_since, ?)"
                " ELSE failing_since END, next_poll_at = ?, poll_interval = ?, poll_reason = ?"
                " WHERE id = ?",
                (now, message[:1000], kind, now, count, count, now, iso(next_poll_at),
                 interval, reason, feed_id),
            )

    def set_feed_health(self, feed_id: int, state: str, since: datetime) -> None:
        """Record a change of the feed's health state ("ok", "failing", "quiet")."""
        with _errors("saving feed health"), self._write():
            self.db.execute("UPDATE feeds SET health_state = ?, health_since = ? WHERE id = ?",
                            (state, iso(since), feed_id))

    def set_alerts_held(self, feed_id: int, since: datetime | None) -> None:
        """Open (a time) or close (None) the feed's GUID-churn circuit breaker."""
        with _errors("saving feed breaker"), self._write():
            self.db.execute("UPDATE feeds SET alerts_held_since = ? WHERE id = ?",
                            (iso(since), feed_id))

    def feeds_table(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM feeds WHERE enabled = 1 ORDER BY id"))

    # items ----------------------------------------------------------------
    def unseen(self, feed_id: int, items: Sequence[FeedItem]) -> list[FeedItem]:
        """The items this feed has not stored yet, by guid and by content hash.

        The hash catches GUID churn (a feed that changes ids or tracking
        parameters on every poll while the story stays the same).
        """
        if not items:
            return []
        with _errors("reading items"):
            guids = {r[0] for r in self.db.execute(
                f"SELECT guid FROM items WHERE feed_id = ? AND guid IN ({','.join('?' * len(items))})",
                [feed_id, *[i.guid for i in items]],
            )}
            hashes = {r[0] for r in self.db.execute(
                f"SELECT content_hash FROM items WHERE feed_id = ? AND content_hash IN"
                f" ({','.join('?' * len(items))})",
                [feed_id, *[i.content_hash for i in items]],
            )}
        fresh: list[FeedItem] = []
        batch_guids: set[str] = set()
        for item in items:
            if item.guid in guids or item.guid in batch_guids:
                continue
            if item.content_hash and item.content_hash in hashes:
                continue
            batch_guids.add(item.guid)
            fresh.append(item)
        return fresh

    def known_article(self, dedup_key: str) -> int | None:
        row = self.db.execute(
            "SELECT id FROM articles WHERE dedup_key = ?", (dedup_key,)
        ).fetchone()
        return row[0] if row else None

    def record_item(
        self, feed_id: int, source: str, processed: ProcessedArticle,
        route: Callable[[TopicMatch], Sequence[str]],
    ) -> RecordResult:
        """Store an item with its article, matches and outbox rows, atomically.

        When the article (same canonical URL or content) is already stored from
        another feed, only the item row is added: no second match, no second
        alert. ``route`` names the channels a match goes to.
        """
        item, article = processed.item, processed.article
        key = dedup_key(item)
        now = iso(utcnow())
        with _errors(f"storing item {item.link or item.guid}"), self._write():
            existing = self.known_article(key)
            match_ids: list[int] = []
            alert_ids: list[int] = []
            if existing is not None:
                article_id = existing
            else:
                cur = self.db.execute(
                    "INSERT INTO articles (dedup_key, canonical_url, content_hash, url, title,"
                    " summary, body, text_source, language, author, published, page_error,"
                    " first_feed_id, first_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, item.canonical_url, item.content_hash, article.url, article.title,
                     article.summary, article.body, article.text_source, article.language,
                     article.author, iso(item.published), processed.page_error, feed_id, now),
                )
                article_id = cur.lastrowid
                for match in processed.matches:
                    cur = self.db.execute(
                        "INSERT INTO matches (article_id, topic, score, threshold, severity,"
                        " terms, hits, evidence, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (article_id, match.topic, match.score, match.threshold, match.severity,
                         json.dumps(list(match.terms), ensure_ascii=False),
                         json.dumps([asdict(h) for h in match.hits], ensure_ascii=False),
                         _evidence_json(match.evidence), now),
                    )
                    match_id = cur.lastrowid
                    match_ids.append(match_id)
                    for channel in route(match):
                        cur = self.db.execute(
                            "INSERT OR IGNORE INTO alerts (alert_key, match_id, article_id,"
                            " channel, topic, severity, title, url, source, published, score,"
                            " threshold, terms, evidence, status, attempts, next_attempt_at,"
                            " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',0,?,?)",
                            (alert_key(article_id, match.topic, channel), match_id, article_id,
                             channel, match.topic, match.severity, article.title, article.url,
                             source, iso(item.published), match.score, match.threshold,
                             json.dumps(list(match.terms), ensure_ascii=False),
                             _evidence_json(match.evidence), now, now),
                        )
                        if cur.rowcount:
                            alert_ids.append(cur.lastrowid)
            self.db.execute(
                "INSERT OR IGNORE INTO items (feed_id, guid, link, canonical_url, title,"
                " published, first_seen, content_hash, article_id) VALUES (?,?,?,?,?,?,?,?,?)",
                (feed_id, item.guid, item.link, item.canonical_url, item.title,
                 iso(item.published), now, item.content_hash, article_id),
            )
        return RecordResult(article_id, existing is None, tuple(match_ids), tuple(alert_ids))

    def item_rate(self, feed_id: int, now: datetime, window_days: float = 14.0) -> float:
        """New items a day over the last ``window_days``, by each item's effective date.

        The effective date is the published date, clamped to when the item was
        first seen (a date in 2100 counts as "now", a backlog item from 2019 as
        2019). A young feed is judged over its own span (at least one day), so
        the first poll of a busy feed already gives a useful rate.
        """
        cutoff = iso(now - timedelta(days=window_days))
        with _errors("reading item rate"):
            count, oldest = self.db.execute(
                "SELECT COUNT(*), MIN(d) FROM (SELECT CASE WHEN published IS NOT NULL"
                " AND published < first_seen THEN published ELSE first_seen END AS d"
                " FROM items WHERE feed_id = ? AND first_seen >= ?) WHERE d >= ?",
                (feed_id, cutoff, cutoff),
            ).fetchone()
        if not count:
            return 0.0
        span_days = (now - (parse_iso(oldest) or now)).total_seconds() / 86_400
        return count / max(1.0, min(window_days, span_days))

    # alerts (outbox) ------------------------------------------------------
    @staticmethod
    def _iso_up(moment: datetime) -> str:
        """``iso()`` rounded up to the second: a wait (Retry-After) is never cut short."""
        if moment.microsecond:
            moment = moment + timedelta(microseconds=1_000_000 - moment.microsecond)
        return iso(moment) or ""

    def due_alerts(self, *, now: datetime | None = None, limit: int = 100,
                   channels: Sequence[str] | None = None) -> list[PendingAlert]:
        """Pending alerts whose next attempt is due, oldest first."""
        now_s = iso(now or utcnow())
        sql = ("SELECT * FROM alerts WHERE status = 'pending' AND"
               " (next_attempt_at IS NULL OR next_attempt_at <= ?)")
        params: list[Any] = [now_s]
        if channels is not None:
            sql += f" AND channel IN ({','.join('?' * len(channels))})"
            params.extend(channels)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        with _errors("reading the outbox"):
            rows = list(self.db.query(sql, params))
        return [_pending_alert(r) for r in rows]

    def enqueue_notice(self, key: str, title: str, body: str, channels: Sequence[str],
                       *, severity: str = "high") -> list[int]:
        """Queue a daemon-health message (feed failing, alert dead, database error).

        ``key`` identifies the event (e.g. ``feed-failing-3-2026-11-28T10:00``):
        a notice with a key already queued is not queued again, so an ongoing
        problem raises one message, not one per poll.
        """
        now = iso(utcnow())
        ids: list[int] = []
        with _errors("queueing a notice"), self._write():
            for channel in channels:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO alerts (alert_key, channel, topic, severity, title,"
                    " source, kind, body, status, attempts, next_attempt_at, created_at, score,"
                    " threshold, terms, evidence)"
                    " VALUES (?,?,?,?,?,'newsmon','notice',?,'pending',0,?,?,0,0,'[]','[]')",
                    (f"n-{key}-{channel}", channel, NOTICE_TOPIC, severity, title, body, now, now),
                )
                if cur.rowcount:
                    ids.append(int(cur.lastrowid))
        return ids

    def mark_sent(self, alert_id: int) -> None:
        with _errors(f"marking alert {alert_id} sent"), self._write():
            self.db.execute(
                "UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?", (iso(utcnow()), alert_id),
            )

    def mark_failed(self, alert_id: int, *, error: str, retry_in: float,
                    dead: bool = False) -> None:
        next_at = utcnow() + timedelta(seconds=retry_in)
        with _errors(f"saving alert {alert_id} failure"), self._write():
            self.db.execute(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " status = ? WHERE id = ?",
                (error[:500], iso(next_at), "dead" if dead else "pending", alert_id),
            )

    def alert_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT status, COUNT(*) FROM alerts GROUP BY status")}

    def due_channels(self, *, now: datetime | None = None) -> list[str]:
        """Channels with at least one due pending alert, by their oldest due alert."""
        with _errors("reading the outbox"):
            return [r[0] for r in self.db.execute(
                "SELECT channel FROM alerts WHERE status = 'pending' AND"
                " (next_attempt_at IS NULL OR next_attempt_at <= ?)"
                " GROUP BY channel ORDER BY MIN(id)", (iso(now or utcnow()),))]

    def due_outbox(self, channel: str, *, now: datetime | None = None,
                   limit: int = 1000) -> list[tuple[PendingAlert, str | None]]:
        """One channel's due pending alerts, oldest first, each with why it waited."""
        with _errors("reading the outbox"):
            rows = list(self.db.query(
                "SELECT * FROM alerts WHERE status = 'pending' AND channel = ? AND"
                " (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
                (channel, iso(now or utcnow()), limit)))
        return [(_pending_alert(r), r.get("held")) for r in rows]

    def hold_alerts(self, holds: dict[int, tuple[datetime, str]]) -> None:
        """Make alerts wait (digest, quiet hours, throttle) without counting an attempt."""
        if not holds:
            return
        with _errors("holding alerts"), self._write():
            self.db.conn.executemany(
                "UPDATE alerts SET next_attempt_at = ?, held = ? WHERE id = ? AND"
                " status = 'pending'",
                [(self._iso_up(until), why, alert_id) for alert_id, (until, why) in holds.items()])

    def mark_delivered(self, channel: str, alert_ids: Sequence[int], *, kind: str,
                       now: datetime | None = None) -> int:
        """Record one message that carried ``alert_ids``: all sent, in one transaction.

        Also resets the channel's failure count. Returns the message's id.
        """
        sent_at = iso(now or utcnow())
        with _errors(f"marking alerts sent on {channel}"), self._write():
            cur = self.db.execute(
                "INSERT INTO deliveries (channel, kind, alerts, sent_at) VALUES (?,?,?,?)",
                (channel, kind, len(alert_ids), sent_at))
            delivery_id = int(cur.lastrowid)
            self.db.conn.executemany(
                "UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " last_error = NULL, held = NULL, delivery_id = ? WHERE id = ?",
                [(sent_at, delivery_id, i) for i in alert_ids])
            self.db.execute(
                "INSERT INTO channel_state (channel, failures, last_sent_at) VALUES (?, 0, ?)"
                " ON CONFLICT(channel) DO UPDATE SET failures = 0, blocked_until = NULL,"
                " last_error = NULL, last_sent_at = excluded.last_sent_at", (channel, sent_at))
        return delivery_id

    def mark_attempt_failed(self, channel: str, alert_ids: Sequence[int], *, error: str,
                            retry_at: datetime, dead_ids: Sequence[int] = ()) -> None:
        """A message to ``channel`` failed: its alerts wait until ``retry_at`` (the
        channel is blocked until then too); ``dead_ids`` are dead-lettered."""
        dead = set(dead_ids)
        with _errors(f"saving a failure on {channel}"), self._write():
            self.db.conn.executemany(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " status = ? WHERE id = ?",
                [(error[:500], self._iso_up(retry_at), "dead" if i in dead else "pending", i)
                 for i in alert_ids])
            self.db.execute(
                "INSERT INTO channel_state (channel, failures, blocked_until, last_error)"
                " VALUES (?, 1, ?, ?) ON CONFLICT(channel) DO UPDATE SET"
                " failures = failures + 1, blocked_until = excluded.blocked_until,"
                " last_error = excluded.last_error",
                (channel, self._iso_up(retry_at), error[:500]))

    def channel_state(self, channel: str) -> dict[str, Any]:
        """``failures``, ``blocked_until`` (datetime | None), ``last_sent_at``, ``last_error``."""
        with _errors("reading channel state"):
            row = self.db.execute(
                "SELECT failures, blocked_until, last_sent_at, last_error FROM channel_state"
                " WHERE channel = ?", (channel,)).fetchone()
        if row is None:
            return {"failures": 0, "blocked_until": None, "last_sent_at": None,
                    "last_error": None}
        return {"failures": row[0] or 0, "blocked_until": parse_iso(row[1]),
                "last_sent_at": parse_iso(row[2]), "last_error": row[3]}

    def recent_messages(self, channel: str, since: datetime, *,
                        kinds: Sequence[str] = ("alert",)) -> list[datetime]:
        """When the messages of these kinds were sent to ``channel`` since ``since``."""
        with _errors("reading deliveries"):
            rows = self.db.execute(
                f"SELECT sent_at FROM deliveries WHERE channel = ? AND sent_at > ? AND"
                f" kind IN ({','.join('?' * len(kinds))}) ORDER BY sent_at",
                (channel, iso(since), *kinds)).fetchall()
        return [d for d in (parse_iso(r[0]) for r in rows) if d is not None]

    def list_alerts(self, *, limit: int = 50, status: str | None = None,
                    channel: str | None = None) -> list[dict[str, Any]]:
        """The newest outbox rows (for ``newsmon alerts``), newest first."""
        sql = ("SELECT id, alert_key, channel, topic, severity, kind, title, status, held,"
               " attempts, next_attempt_at, last_error, created_at, sent_at FROM alerts")
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if channel:
            where.append("channel = ?")
            params.append(channel)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with _errors("reading the outbox"):
            return list(self.db.query(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]))

    def requeue(self, ref: str) -> int:
        """Put one alert (by id or alert key) back in the outbox, due now.

        Sent alerts are re-sent, dead ones revived; the attempt count restarts.
        """
        with _errors("re-queueing an alert"), self._write():
            cur = self.db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, held = NULL,"
                " next_attempt_at = ?, last_error = NULL WHERE alert_key = ? OR"
                " (CAST(id AS TEXT) = ?)", (iso(utcnow()), ref, ref))
        return int(cur.rowcount)

    # cycles -----------------------------------------------------------------
    def start_cycle(self) -> int:
        with _errors("starting a cycle"), self._write():
            cur = self.db.execute("INSERT INTO cycles (started_at) VALUES (?)", (iso(utcnow()),))
        return int(cur.lastrowid)

    def finish_cycle(self, cycle_id: int, *, feeds_ok: int, feeds_failed: int, items_new: int,
                     matches: int, alerts: int, error: str | None = None) -> None:
        with _errors("finishing a cycle"), self._write():
            self.db.execute(
                "UPDATE cycles SET finished_at = ?, feeds_ok = ?, feeds_failed = ?, items_new = ?,"
                " matches = ?, alerts = ?, error = ? WHERE id = ?",
                (iso(utcnow()), feeds_ok, feeds_failed, items_new, matches, alerts, error,
                 cycle_id),
            )

    def record_cycle(self, started: datetime, *, feeds_ok: int, feeds_failed: int,
                     items_new: int, matches: int, alerts: int, error: str | None = None) -> int:
        """Write a whole finished cycle in one statement (the daemon's tally of polls)."""
        with _errors("recording a cycle"), self._write():
            cur = self.db.execute(
                "INSERT INTO cycles (started_at, finished_at, feeds_ok, feeds_failed, items_new,"
                " matches, alerts, error) VALUES (?,?,?,?,?,?,?,?)",
                (iso(started), iso(utcnow()), feeds_ok, feeds_failed, items_new, matches, alerts,
                 error))
        return int(cur.lastrowid)

    def last_cycle(self) -> dict[str, Any] | None:
        """The most recently finished cycle, or None."""
        with _errors("reading cycles"):
            rows = list(self.db.query(
                "SELECT * FROM cycles WHERE finished_at IS NOT NULL ORDER BY finished_at DESC,"
                " id DESC LIMIT 1"))
        return rows[0] if rows else None

    # operations: status, retention, backup (used by the daemon and ``newsmon db``) ---
    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open an existing database read-only: no creation, no migration, no writes."""
        store = cls.__new__(cls)
        store.path = Path(path)
        with _errors(f"opening {store.path}"):
            store.db = connect(store.path, readonly=True)
        return store

    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def get_meta(self, key: str) -> str | None:
        with _errors("reading meta"):
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with _errors("saving meta"), self._write():
            self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key)"
                            " DO UPDATE SET value = excluded.value", (key, value))

    def feed_health(self) -> list[dict[str, Any]]:
        """Enabled feeds with their poll times and failure state, for status."""
        with _errors("reading feeds"):
            return list(self.db.query(
                "SELECT id, url, name, last_poll_at, last_success_at, consecutive_failures,"
                " last_error_kind, last_error, failing_since FROM feeds WHERE enabled = 1"
                " ORDER BY id"))

    def retry_dead(self) -> int:
        """Put dead-lettered alerts back in the outbox, due now, attempts reset."""
        with _errors("re-queueing dead alerts"), self._write():
            cur = self.db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?"
                " WHERE status = 'dead'", (iso(utcnow()),))
        return int(cur.rowcount)

    def database_bytes(self) -> int:
        """The database's size on disk: the file plus its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            part = Path(f"{self.path}{suffix}")
            total += part.stat().st_size if part.is_file() else 0
        return total

    def prune_bodies(self, before: datetime) -> int:
        """Drop the body text of articles first seen before ``before``.

        Titles, summaries, matches (with their evidence) and alerts stay, so
        past alerts can still be explained; ``body_pruned`` records the loss.
        """
        with _errors("pruning article bodies"), self._write():
            cur = self.db.execute(
                "UPDATE articles SET body = NULL, body_pruned = 1"
                " WHERE body_pruned = 0 AND first_seen < ?", (iso(before),))
        return int(cur.rowcount)

    def prune_cycles(self, before: datetime) -> int:
        with _errors("pruning cycles"), self._write():
            cur = self.db.execute("DELETE FROM cycles WHERE finished_at < ?", (iso(before),))
        return int(cur.rowcount)

    def free_fraction(self) -> float:
        """The share of the file that is free pages (what VACUUM would give back)."""
        with _errors("reading page counts"):
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return free / pages if pages else 0.0

    def optimize(self, *, vacuum: bool = False) -> None:
        """``PRAGMA optimize`` and a WAL checkpoint; ``VACUUM`` too when asked.

        VACUUM rewrites the whole file and holds the write lock meanwhile, so
        the daemon asks for it only when idle and when enough pages are free.
        """
        with _errors("optimising the database"):
            self.db.execute("PRAGMA optimize")
            if vacuum:
                self.db.execute("VACUUM")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_check(self) -> str:
        with _errors("checking integrity"):
            return "; ".join(r[0] for r in self.db.execute("PRAGMA integrity_check"))

    def backup(self, dest: Path) -> None:
        """Copy the live database to ``dest`` with SQLite's online backup API.

        Consistent while the daemon writes (the copy restarts on a concurrent
        write, page batches keep the lock short).
        """
        dest = Path(dest)
        with _errors(f"backing up to {dest}"):
            target = sqlite3.connect(str(dest))
            try:
                self.db.conn.backup(target, pages=256)
            finally:
                target.close()


    # clock ---------------------------------------------------------------------
    def shift_deadlines(self, seconds: float) -> int:
        """Move every stored future deadline earlier by ``seconds``.

        After the wall clock steps back, the next polls and alert retries written
        before the step lie ``seconds`` too far ahead; this puts them back where
        they were meant to be. Returns the number of rows moved.
        """
        moved = 0
        delta = timedelta(seconds=seconds)
        with _errors("moving deadlines after a clock step"), self._write():
            for table, column in (("feeds", "next_poll_at"), ("alerts", "next_attempt_at")):
                rows = self.db.execute(
                    f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
                for row_id, value in rows:
                    when = parse_iso(value)
                    if when is not None:
                        self.db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?",
                                        (iso(when - delta), row_id))
                        moved += 1
        return moved


def dedup_key(item: FeedItem) -> str:
    """One story, one article: its canonical URL, else its content hash."""
    if item.canonical_url:
        return "url:" + item.canonical_url
    return "hash:" + item.content_hash


def alert_key(article_id: int, topic: str, channel: str) -> str:
    return f"a{article_id}-{topic}-{channel}"


def _pending_alert(row: dict[str, Any]) -> PendingAlert:
    return PendingAlert(
        id=row["id"], alert_key=row["alert_key"], channel=row["channel"], topic=row["topic"],
        severity=row["severity"] or "normal", title=row["title"] or "", url=row["url"],
        source=row["source"] or "", published=parse_iso(row["published"]),
        score=row["score"] or 0.0, threshold=row["threshold"] or 0.0,
        evidence=_evidence_from_json(row["evidence"]),
        terms=tuple(json.loads(row["terms"] or "[]")),
        created_at=parse_iso(row["created_at"]) or utcnow(), attempts=row["attempts"] or 0,
        kind=row["kind"] or "match", body=row["body"] or "",
    )
