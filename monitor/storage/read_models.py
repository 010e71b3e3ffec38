"""Read models: the queries ``newsmon feeds``/``alerts``/``status`` (and a future
web view) share. They read, never write, and return typed rows for printing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.config import FeedConfig
from monitor.records import AlertListRow, FeedHealthRow, FeedRecord, FeedTableRow, StatusFigures
from monitor.storage.db import Connection, errors, iso, parse_iso
from monitor.storage.feeds import feed_record
from monitor.storage.operations import OperationsRepository
from monitor.storage.outbox import OutboxRepository
from monitor.storage.stories import STORY_ALERT_PREFIX


def _health(enabled: bool, record: FeedRecord) -> str:
    """The word ``newsmon feeds`` shows; agrees with ``status``, which counts any
    failing last poll as failing (the stored state turns "failing" only after
    ``fetch.failing_notice_after``, when the notice goes out)."""
    if not enabled:
        return "disabled"
    if record.consecutive_failures:
        return "failing"
    if record.health_state and record.health_state != "ok":
        return record.health_state
    return "new" if record.last_poll_at is None else "ok"


def feed_table(feeds: Sequence[FeedConfig], stored: Mapping[str, FeedRecord]) -> list[FeedTableRow]:
    """One row per configured feed, with its stored health (blank if never polled)."""
    rows = []
    for feed in feeds:
        record = stored.get(feed.url)
        if record is None:
            rows.append(FeedTableRow(
                name=feed.name or "", url=feed.url, health="disabled" if not feed.enabled else "new",
                last_success=None, failures=0, last_error_kind=None, next_poll=None,
                interval_s=None, reason=None, items_per_day=None, alerts_held_since=None,
                last_error=None))
            continue
        rate = record.items_per_day
        rows.append(FeedTableRow(
            name=feed.name or "", url=feed.url,
            health=_health(feed.enabled, record),
            last_success=record.last_success_at, failures=record.consecutive_failures,
            last_error_kind=record.last_error_kind, next_poll=record.next_poll_at,
            interval_s=round(record.poll_interval) if record.poll_interval else None,
            reason=record.poll_reason,
            items_per_day=round(rate, 2) if rate is not None else None,
            alerts_held_since=record.alerts_held_since,
            last_error=record.last_error if record.consecutive_failures else None,
        ))
    return rows


class ReadModels:
    """The shared read-only queries over one connection."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    def enabled_feeds(self) -> dict[str, FeedRecord]:
        """Every enabled feed's stored record, by URL."""
        with errors("reading feeds"):
            rows = list(self._db.query("SELECT * FROM feeds WHERE enabled = 1 ORDER BY id"))
        return {r["url"]: feed_record(r) for r in rows}

    def feed_table(self, feeds: Sequence[FeedConfig]) -> list[FeedTableRow]:
        """``newsmon feeds``: the configured feeds with their stored health."""
        return feed_table(feeds, self.enabled_feeds())

    def feed_health(self) -> list[FeedHealthRow]:
        """Enabled feeds with their poll times and failure state, for status."""
        with errors("reading feeds"):
            rows = self._db.execute(
                "SELECT id, url, name, last_poll_at, last_success_at, consecutive_failures,"
                " last_error_kind, last_error, failing_since FROM feeds WHERE enabled = 1"
                " ORDER BY id").fetchall()
        return [FeedHealthRow(
            id=r[0], url=r[1], name=r[2], last_poll_at=parse_iso(r[3]),
            last_success_at=parse_iso(r[4]), consecutive_failures=int(r[5] or 0),
            last_error_kind=r[6], last_error=r[7], failing_since=parse_iso(r[8]))
            for r in rows]

    def alert_list(self, *, limit: int = 50, status: str | None = None,
                   channel: str | None = None) -> list[AlertListRow]:
        """The newest outbox rows (for ``newsmon alerts``), newest first."""
        sql = ("SELECT id, alert_key, channel, topic, severity, kind, title, status, held,"
               " attempts, next_attempt_at, last_error, created_at, sent_at FROM alerts")
        where: list[str] = []
        params: list[object] = []
        if status:
            where.append("status = ?")
            params.append(status)
        if channel:
            where.append("channel = ?")
            params.append(channel)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with errors("reading the outbox"):
            rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
        return [AlertListRow(
            id=r[0], alert_key=r[1], channel=r[2], topic=r[3], severity=r[4], kind=r[5],
            title=r[6], status=r[7], held=r[8], attempts=int(r[9] or 0),
            next_attempt_at=parse_iso(r[10]), last_error=r[11], created_at=parse_iso(r[12]),
            sent_at=parse_iso(r[13])) for r in rows]

    def status_figures(self) -> StatusFigures:
        """Everything ``newsmon status`` judges (see ``monitor.runtime.status``)."""
        ops = OperationsRepository(self._conn)
        return StatusFigures(
            database=self._conn.label, database_bytes=ops.database_bytes(),
            schema_version=ops.schema_version(), feeds=tuple(self.feed_health()),
            alert_counts=OutboxRepository(self._conn).counts(),
            daemon={k: ops.get_meta(f"daemon_{k}")
                    for k in ("started_at", "pid", "stopped_at", "problem", "storage")},
            last_cycle=ops.last_cycle())


# --- the web workspace (monitor/web) ---------------------------------------------------------
# Row types live here beside their queries: they are read by the web pages alone.


@dataclass(frozen=True, slots=True)
class MatchedArticleRow:
    """A matched article in a topic's list (newest first)."""

    article_id: int
    topic: str
    title: str
    url: str | None
    score: float
    threshold: float
    severity: str | None
    matched_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredMatch:
    """One stored match of an article, with what the classifier found (JSON decoded)."""

    id: int
    topic: str
    score: float
    threshold: float
    severity: str | None
    terms: tuple[str, ...]
    hits: tuple[dict[str, Any], ...]  # TermHit fields: term, text, field, sentence, weight
    evidence: tuple[dict[str, Any], ...]  # EvidenceSentence fields: field, text, marked, terms
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class ArticleAlertRow:
    id: int
    channel: str
    topic: str | None
    status: str
    created_at: datetime | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class ArticleDetail:
    id: int
    title: str
    url: str | None
    summary: str
    body: str | None
    body_pruned: bool
    text_source: str | None
    language: str | None
    author: str | None
    published: datetime | None
    first_seen: datetime | None
    sources: tuple[str, ...]  # the feeds (name, else URL) that carried it
    matches: tuple[StoredMatch, ...]
    alerts: tuple[ArticleAlertRow, ...]


@dataclass(frozen=True, slots=True)
class ChannelSummaryRow:
    """One channel's outbox and health, by name only (never its URL)."""

    channel: str
    sent: int
    pending: int
    dead: int
    failures: int
    failing_since: datetime | None
    blocked_until: datetime | None
    last_sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class StoredArticleRow:
    """A stored article's text, for re-running rules over history (``newsmon backtest``)."""

    id: int
    title: str
    summary: str
    body: str
    body_pruned: bool
    text_source: str
    language: str | None
    url: str | None
    published: datetime | None
    first_seen: datetime | None


def _loads(text: str | None) -> tuple[Any, ...]:
    return tuple(json.loads(text)) if text else ()


# Every topic that has a match, read from the (topic, created_at) index by skipping from one
# topic to the next (a handful of index seeks, never a scan of the matches).
_MATCHED_TOPICS = (
    "WITH RECURSIVE t(topic) AS (SELECT MIN(topic) FROM matches UNION ALL"
    " SELECT (SELECT MIN(topic) FROM matches WHERE topic > t.topic) FROM t WHERE t.topic IS NOT NULL)"
    " SELECT topic FROM t WHERE topic IS NOT NULL")


def matched_topic_ids(connection: Connection) -> list[str]:
    """The topics with at least one stored match."""
    with errors("reading matches"):
        return [str(r[0]) for r in connection.db.execute(_MATCHED_TOPICS)]


def latest_matches(connection: Connection, *, per_topic: int = 5) -> dict[str, list[MatchedArticleRow]]:
    """The newest matched articles of each topic, newest topic activity first (per topic
    an index range read of ``matches(topic, created_at)``)."""
    out: dict[str, list[MatchedArticleRow]] = {}
    with errors("reading matches"):
        for topic in matched_topic_ids(connection):
            rows = connection.db.execute(
                "SELECT m.article_id, m.topic, a.title, a.url, m.score, m.threshold, m.severity,"
                " m.created_at FROM matches m JOIN articles a ON a.id = m.article_id"
                " WHERE m.topic = ? ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
                (topic, per_topic)).fetchall()
            out[topic] = [MatchedArticleRow(
                article_id=r[0], topic=r[1], title=r[2] or "", url=r[3], score=r[4],
                threshold=r[5], severity=r[6], matched_at=parse_iso(r[7])) for r in rows]
    newest = {t: max((r.matched_at.isoformat() if r.matched_at else "") for r in rows)
              for t, rows in out.items() if rows}
    return {t: out[t] for t in sorted(newest, key=lambda t: newest[t], reverse=True)}


def daily_volume(connection: Connection, *, since: datetime) -> dict[str, dict[str, int]]:
    """Matches per topic per UTC day (``YYYY-MM-DD``) since ``since``: each match
    alerts once per channel, so this is the alert volume an analyst reads. Per topic a
    covering range read of ``matches(topic, created_at)``: the window's rows only."""
    out: dict[str, dict[str, int]] = {}
    with errors("reading match volume"):
        for topic in matched_topic_ids(connection):
            for day, count in connection.db.execute(
                    "SELECT substr(created_at, 1, 10) AS day, COUNT(*) FROM matches"
                    " WHERE topic = ? AND created_at >= ? GROUP BY day", (topic, iso(since))):
                out.setdefault(topic, {})[day] = int(count)
    return out


def article_detail(connection: Connection, article_id: int) -> ArticleDetail | None:
    """One article with its sources, stored matches and alerts; None when unknown."""
    db = connection.db
    with errors(f"reading article {article_id}"):
        a = db.execute(
            "SELECT id, title, url, summary, body, body_pruned, text_source, language, author,"
            " published, first_seen FROM articles WHERE id = ?", (article_id,)).fetchone()
        if a is None:
            return None
        sources = [r[0] for r in db.execute(
            "SELECT coalesce(nullif(f.name, ''), f.url) AS feed FROM items i"
            " JOIN feeds f ON f.id = i.feed_id WHERE i.article_id = ? GROUP BY feed"
            " ORDER BY MIN(i.id)", (article_id,))]
        matches = db.execute(
            "SELECT id, topic, score, threshold, severity, terms, hits, evidence, created_at"
            " FROM matches WHERE article_id = ? ORDER BY score DESC", (article_id,)).fetchall()
        alerts = db.execute(
            "SELECT id, channel, topic, status, created_at, sent_at FROM alerts"
            " WHERE article_id = ? ORDER BY id", (article_id,)).fetchall()
    return ArticleDetail(
        id=a[0], title=a[1] or "", url=a[2], summary=a[3] or "", body=a[4], body_pruned=bool(a[5]),
        text_source=a[6], language=a[7], author=a[8], published=parse_iso(a[9]),
        first_seen=parse_iso(a[10]), sources=tuple(sources),
        matches=tuple(StoredMatch(
            id=m[0], topic=m[1], score=m[2], threshold=m[3], severity=m[4],
            terms=_loads(m[5]), hits=_loads(m[6]), evidence=_loads(m[7]),
            created_at=parse_iso(m[8])) for m in matches),
        alerts=tuple(ArticleAlertRow(id=r[0], channel=r[1], topic=r[2], status=r[3],
                                     created_at=parse_iso(r[4]), sent_at=parse_iso(r[5]))
                     for r in alerts))


def channel_summary(connection: Connection, channels: Sequence[str]) -> list[ChannelSummaryRow]:
    """Each configured channel (and any other the outbox names): counts and health.

    ``last_error`` is as stored; callers showing it redact secrets first."""
    db = connection.db
    with errors("reading channels"):
        counts: dict[str, dict[str, int]] = {}
        for channel, status, n in db.execute(
                "SELECT channel, status, COUNT(*) FROM alerts GROUP BY channel, status"):
            counts.setdefault(channel, {})[status] = int(n)
        states = {r[0]: r for r in db.execute(
            "SELECT channel, failures, failing_since, blocked_until, last_sent_at, last_error"
            " FROM channel_state")}
    names = list(dict.fromkeys([*channels, *sorted(counts)]))
    rows = []
    for name in names:
        c, s = counts.get(name, {}), states.get(name)
        rows.append(ChannelSummaryRow(
            channel=name, sent=c.get("sent", 0), pending=c.get("pending", 0), dead=c.get("dead", 0),
            failures=int(s[1] or 0) if s else 0, failing_since=parse_iso(s[2]) if s else None,
            blocked_until=parse_iso(s[3]) if s else None, last_sent_at=parse_iso(s[4]) if s else None,
            last_error=s[5] if s else None))
    return rows


def stored_articles(connection: Connection, *, since: datetime | None = None,
                    batch: int = 500) -> Iterator[StoredArticleRow]:
    """Every stored article first seen since ``since``, oldest first, read in batches."""
    last = 0
    cutoff = iso(since) if since else ""
    while True:
        with errors("reading articles"):
            rows = connection.db.execute(
                "SELECT id, title, summary, body, body_pruned, text_source, language, url,"
                " published, first_seen FROM articles WHERE id > ? AND first_seen >= ?"
                " ORDER BY id LIMIT ?", (last, cutoff, batch)).fetchall()
        if not rows:
            return
        for r in rows:
            yield StoredArticleRow(
                id=r[0], title=r[1] or "", summary=r[2] or "", body=r[3] or "",
                body_pruned=bool(r[4]), text_source=r[5] or "summary", language=r[6], url=r[7],
                published=parse_iso(r[8]), first_seen=parse_iso(r[9]))
        last = rows[-1][0]


def count_articles(connection: Connection, *, since: datetime | None = None) -> int:
    with errors("counting articles"):
        return int(connection.db.execute(
            "SELECT COUNT(*) FROM articles WHERE first_seen >= ?",
            (iso(since) if since else "",)).fetchone()[0])


def matched_topics(connection: Connection, article_ids: Sequence[int]) -> dict[int, set[str]]:
    """The topics each article matched when it was recorded."""
    out: dict[int, set[str]] = {i: set() for i in article_ids}
    for start in range(0, len(article_ids), 500):
        chunk = list(article_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        with errors("reading matches"):
            for article_id, topic in connection.db.execute(
                    f"SELECT article_id, topic FROM matches WHERE article_id IN ({marks})", chunk):
                out[int(article_id)].add(topic)
    return out


# --- story pages: which stored article each member is, and the alerts a story produced ---
@dataclass(frozen=True, slots=True)
class StoryAlertRow:
    """One alert of a story: where it went (channel name), for which topic and article."""

    id: int
    article_id: int | None
    channel: str
    topic: str | None
    status: str
    created_at: datetime | None
    sent_at: datetime | None


def story_article_ids(connection: Connection, keys: Iterable[str]) -> dict[str, int]:
    """Article key (``dedup_key``) → stored article id, for the keys that are stored."""
    wanted = list(set(keys))
    out: dict[str, int] = {}
    with errors("reading story articles"):
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            out.update((str(k), int(i)) for k, i in connection.db.execute(
                f"SELECT dedup_key, MIN(id) FROM articles WHERE dedup_key IN ({','.join('?' * len(chunk))})"
                " GROUP BY dedup_key", chunk))
    return out


def story_alerts(connection: Connection, story_id: str) -> list[StoryAlertRow]:
    """The outbox rows of a story (``alerts.story_id``, or the ``story-<id>-…`` key), oldest first."""
    prefix = f"{STORY_ALERT_PREFIX}{story_id}-"
    with errors(f"reading story {story_id}'s alerts"):
        rows = connection.db.execute(
            "SELECT id, article_id, channel, topic, status, created_at, sent_at FROM alerts"
            " WHERE story_id = ? OR (alert_key >= ? AND alert_key < ?) ORDER BY id",
            (story_id, prefix, prefix[:-1] + chr(ord("-") + 1))).fetchall()
    return [StoryAlertRow(id=int(r[0]), article_id=None if r[1] is None else int(r[1]),
                          channel=str(r[2]), topic=r[3], status=str(r[4]),
                          created_at=parse_iso(r[5]), sent_at=parse_iso(r[6])) for r in rows]


# --- Atom feeds: a story's alert events -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertEventRow:
    """One alert event: an article that made its story (or, without stories, itself) alert,
    on any channel, for one or more topics; ``alerted_at`` is its first outbox row's time."""

    story_id: str | None
    article_id: int
    alerted_at: datetime | None
    topics: tuple[str, ...]
    title: str
    url: str | None
    label: str | None  # the story's label when there is a story
    follow_up: bool  # not the story's first alert event


_ROWS_PER_EVENT = 16  # outbox rows read per wanted event (topics x channels of one article)


def alert_events(connection: Connection, *, topic: str | None = None,
                 limit: int = 50) -> list[AlertEventRow]:
    """The newest alert events (``alerts`` of kind ``match``, grouped by story and article),
    newest first; with ``topic``, only events that alerted for it."""
    has_stories = connection.has_table("stories")
    label = "(SELECT s.label FROM stories s WHERE s.story_id = e.story_id)" if has_stories else "NULL"
    topic_clause = " AND topic = ?" if topic else ""
    # The candidates: the articles of the newest outbox rows (read backwards by id, stopping
    # early); then all the match rows of those articles, grouped into events.
    with errors("reading alert events"):
        rows = connection.db.execute(
            "SELECT e.story_id, e.article_id, e.at, e.topics, ar.title, ar.url, " + label + ","
            " (SELECT COUNT(DISTINCT b.article_id) FROM alerts b WHERE e.story_id IS NOT NULL"
            "  AND b.story_id = e.story_id AND b.kind = 'match' AND b.created_at < e.at)"
            " FROM (SELECT a.story_id, a.article_id, MIN(a.created_at) AS at,"
            "  group_concat(DISTINCT a.topic) AS topics FROM alerts a"
            "  WHERE a.kind = 'match' AND a.article_id IN (SELECT article_id FROM ("
            "   SELECT article_id FROM alerts WHERE kind = 'match' AND article_id IS NOT NULL"
            + topic_clause + " ORDER BY id DESC LIMIT ?) AS recent)"
            "  GROUP BY a.story_id, a.article_id ORDER BY at DESC, a.article_id DESC"
            "  LIMIT ?) e JOIN articles ar ON ar.id = e.article_id ORDER BY e.at DESC, e.article_id DESC",
            (*([topic] if topic else []), limit * _ROWS_PER_EVENT, limit)).fetchall()
    return [AlertEventRow(story_id=None if r[0] is None else str(r[0]), article_id=int(r[1]),
                          alerted_at=parse_iso(r[2]),
                          topics=tuple(sorted(set(str(r[3]).split(",")))) if r[3] else (),
                          title=r[4] or "", url=r[5], label=r[6], follow_up=bool(r[7]))
            for r in rows]


def matches_of(connection: Connection, article_ids: Sequence[int]) -> dict[int, list[StoredMatch]]:
    """The stored matches of these articles (best score first), by article."""
    out: dict[int, list[StoredMatch]] = {}
    ids = list(dict.fromkeys(article_ids))
    with errors("reading matches"):
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for m in connection.db.execute(
                    "SELECT id, topic, score, threshold, severity, terms, hits, evidence, created_at,"
                    f" article_id FROM matches WHERE article_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY score DESC", chunk):
                out.setdefault(int(m[9]), []).append(StoredMatch(
                    id=m[0], topic=m[1], score=m[2], threshold=m[3], severity=m[4],
                    terms=_loads(m[5]), hits=_loads(m[6]), evidence=_loads(m[7]),
                    created_at=parse_iso(m[8])))
    return out
