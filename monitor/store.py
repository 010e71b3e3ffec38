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


# Append-only: each entry upgrades the schema by one version, in a transaction.
MIGRATIONS: list[Callable[[Database], None]] = [_migration_1]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A database failure (locked, disk full, corrupt), with a clear message."""


def connect(path: Path) -> Database:
    """Open (and create or upgrade) the database at ``path``."""
    path = Path(path)
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

    def close(self) -> None:
        self.db.close()

    # feeds ----------------------------------------------------------------
    def sync_feeds(self, feeds: Iterable[tuple[str, str | None, Sequence[str]]]) -> None:
        """Make sure every configured feed has a row; mark the others disabled."""
        now = iso(utcnow())
        with _errors("saving feeds"), self.db.atomic():
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

    def record_poll_success(
        self, feed_id: int, *, etag: str | None, last_modified: str | None,
        body_hash: str | None, new_items: int, next_poll_at: datetime | None = None,
    ) -> None:
        now = utcnow()
        with _errors("saving poll state"), self.db.atomic():
            self.db.execute(
                "UPDATE feeds SET etag = ?, last_modified = ?, body_hash = ?, last_poll_at = ?,"
                " last_success_at = ?, consecutive_failures = 0, failing_since = NULL,"
                " next_poll_at = ?, items_total = items_total + ? WHERE id = ?",
                (etag, last_modified, body_hash, iso(now), iso(now), iso(next_poll_at),
                 new_items, feed_id),
            )

    def record_poll_failure(
        self, feed_id: int, *, kind: str, message: str, next_poll_at: datetime | None = None,
    ) -> None:
        now = iso(utcnow())
        with _errors("saving poll error"), self.db.atomic():
            self.db.execute(
                "UPDATE feeds SET last_poll_at = ?, last_error = ?, last_error_kind = ?,"
                " last_error_at = ?, consecutive_failures = consecutive_failures + 1,"
                " failing_since = COALESCE(failing_since, ?), next_poll_at = ? WHERE id = ?",
                (now, message[:1000], kind, now, now, iso(next_poll_at), feed_id),
            )

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
        with _errors(f"storing item {item.link or item.guid}"), self.db.atomic():
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

    # alerts (outbox) ------------------------------------------------------
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
        with _errors("queueing a notice"), self.db.atomic():
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
        with _errors(f"marking alert {alert_id} sent"), self.db.atomic():
            self.db.execute(
                "UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?", (iso(utcnow()), alert_id),
            )

    def mark_failed(self, alert_id: int, *, error: str, retry_in: float,
                    dead: bool = False) -> None:
        next_at = utcnow() + timedelta(seconds=retry_in)
        with _errors(f"saving alert {alert_id} failure"), self.db.atomic():
            self.db.execute(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " status = ? WHERE id = ?",
                (error[:500], iso(next_at), "dead" if dead else "pending", alert_id),
            )

    def alert_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT status, COUNT(*) FROM alerts GROUP BY status")}

    # cycles -----------------------------------------------------------------
    def start_cycle(self) -> int:
        with _errors("starting a cycle"), self.db.atomic():
            cur = self.db.execute("INSERT INTO cycles (started_at) VALUES (?)", (iso(utcnow()),))
        return int(cur.lastrowid)

    def finish_cycle(self, cycle_id: int, *, feeds_ok: int, feeds_failed: int, items_new: int,
                     matches: int, alerts: int, error: str | None = None) -> None:
        with _errors("finishing a cycle"), self.db.atomic():
            self.db.execute(
                "UPDATE cycles SET finished_at = ?, feeds_ok = ?, feeds_failed = ?, items_new = ?,"
                " matches = ?, alerts = ?, error = ? WHERE id = ?",
                (iso(utcnow()), feeds_ok, feeds_failed, items_new, matches, alerts, error,
                 cycle_id),
            )


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
