"""Items, articles and matches, and the one-transaction item write.

An item, its article, its matches and its outbox rows are written in one
transaction (``record_item``), so a crash never leaves a match without its
alert nor an item marked seen that was not processed. Which match and outbox
rows to write is decided outside storage (``monitor.identity.plan_item``),
on what the transaction finds stored; the keys are given, not made here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta

from monitor.identity import ItemPlanner
from monitor.models import FeedItem, ProcessedArticle
from monitor.records import RecordResult
from monitor.storage.db import SQLITE, Connection, errors, iso, last_id, parse_iso, utcnow
from monitor.storage.outbox import evidence_json


class ItemRepository:
    """Reads and writes of ``items``, ``articles`` and ``matches``."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    def unseen(self, feed_id: int, items: Sequence[FeedItem]) -> list[FeedItem]:
        """The items this feed has not stored yet, by guid and by content hash.

        The hash catches GUID churn (a feed that changes ids or tracking
        parameters on every poll while the story stays the same).
        """
        if not items:
            return []
        marks = ",".join("?" * len(items))
        with errors("reading items"):
            guids = {r[0] for r in self._db.execute(
                f"SELECT guid FROM items WHERE feed_id = ? AND guid IN ({marks})",
                [feed_id, *[i.guid for i in items]],
            )}
            hashes = {r[0] for r in self._db.execute(
                f"SELECT content_hash FROM items WHERE feed_id = ? AND content_hash IN ({marks})",
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

    def known_article(self, article_key: str) -> int | None:
        """The id of the article stored under ``article_key``, or None."""
        with errors("reading articles"):
            return self._article_id(article_key)

    def _article_id(self, article_key: str) -> int | None:
        row = self._db.execute(
            "SELECT id FROM articles WHERE dedup_key = ?", (article_key,)).fetchone()
        return int(row[0]) if row else None

    def record_item(self, feed_id: int, source: str, processed: ProcessedArticle, *,
                    article_key: str, plan: ItemPlanner) -> RecordResult:
        """Store an item with its article, matches and outbox rows, atomically.

        The article is inserted unless one is stored under ``article_key``;
        ``plan(article_id, known)`` then names the matches and outbox rows to
        add (none for a known article). ``source`` is the feed's label.
        """
        item, article = processed.item, processed.article
        now = iso(utcnow())
        with errors(f"storing item {item.link or item.guid}"), self._conn.write():
            self._conn.lock_key("article", article_key)  # PostgreSQL: one writer per article
            existing = self._article_id(article_key)
            if existing is not None:
                article_id = existing
            else:
                cur = self._db.execute(
                    "INSERT INTO articles (dedup_key, canonical_url, content_hash, url, title,"
                    " summary, body, text_source, language, author, published, page_error,"
                    " first_feed_id, first_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (article_key, item.canonical_url, item.content_hash, article.url,
                     article.title, article.summary, article.body, article.text_source,
                     article.language, article.author, iso(item.published), processed.page_error,
                     feed_id, now),
                )
                article_id = last_id(cur)
                # The search index, in this transaction: a stored article is always findable.
                # (PostgreSQL's is a generated column of the row just inserted: schema.py.)
                if self._conn.dialect == SQLITE:
                    self._db.execute(
                        "INSERT INTO articles_fts (rowid, title, summary, body) VALUES (?,?,?,?)",
                        (article_id, article.title, article.summary, article.body))
            match_ids: list[int] = []
            alert_ids: list[int] = []
            for planned in plan(article_id, existing is not None).matches:
                match = planned.match
                terms = json.dumps(list(match.terms), ensure_ascii=False)
                evidence = evidence_json(match.evidence)
                cur = self._db.execute(
                    "INSERT INTO matches (article_id, topic, score, threshold, severity,"
                    " terms, hits, evidence, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (article_id, match.topic, match.score, match.threshold, match.severity,
                     terms, json.dumps([asdict(h) for h in match.hits], ensure_ascii=False),
                     evidence, now),
                )
                match_id = last_id(cur)
                match_ids.append(match_id)
                for alert in planned.alerts:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO alerts (alert_key, match_id, article_id,"
                        " channel, topic, severity, title, url, source, published, score,"
                        " threshold, terms, evidence, status, attempts, next_attempt_at,"
                        " created_at, story_id, body)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',0,?,?,?,?)",
                        (alert.alert_key, match_id, article_id, alert.channel, match.topic,
                         alert.severity or match.severity, article.title, article.url, source,
                         iso(item.published), match.score, match.threshold, terms, evidence,
                         now, now, alert.story_id, alert.note or None),
                    )
                    if cur.rowcount:
                        alert_ids.append(last_id(cur))
            self._db.execute(
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
        with errors("reading item rate"):
            count, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(d) FROM (SELECT CASE WHEN published IS NOT NULL"
                " AND published < first_seen THEN published ELSE first_seen END AS d"
                " FROM items WHERE feed_id = ? AND first_seen >= ?) AS dated WHERE d >= ?",
                (feed_id, cutoff, cutoff),
            ).fetchone()
        if not count:
            return 0.0
        span_days = (now - (parse_iso(oldest) or now)).total_seconds() / 86_400
        return float(count / max(1.0, min(window_days, span_days)))
