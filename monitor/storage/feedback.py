"""Analyst feedback: "relevant" / "not relevant" on an article, one of its topics, or an alert.

Written by the web workspace (its only write) and by ``newsmon feedback``; read by
``newsmon labels export``, which turns the verdicts into labelled articles for
``newsmon eval`` and ``newsmon train``. Rows are appended,
never updated: the newest verdict on a (article, topic) is the one that counts,
and the history shows when an analyst changed their mind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.storage.db import Connection, errors, iso, last_id, parse_iso, utcnow

__all__ = ["ARTICLE_PREFIX", "VERDICTS", "FeedbackRepository", "FeedbackRow", "FeedbackTarget",
           "JudgedArticle", "Verdict"]

Verdict = Literal["relevant", "not_relevant"]
VERDICTS: tuple[Verdict, ...] = ("relevant", "not_relevant")
ARTICLE_PREFIX = "article:"  # a reference to an article id, as opposed to an alert's id or key


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    id: int
    article_id: int
    topic: str | None
    alert_id: int | None
    verdict: str
    note: str | None
    source: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class FeedbackTarget:
    """What a reference (``article:ID``, an alert id or an alert key) points at."""

    article_id: int | None  # None: a daemon notice, about no article
    alert_id: int | None
    topic: str | None  # the alert's topic; None for an article reference


@dataclass(frozen=True, slots=True)
class JudgedArticle:
    """An article with at least one label derived from its verdicts."""

    article_id: int
    title: str
    text: str
    source: str | None
    published: str | None
    url: str | None
    labels: dict[str, bool]


class FeedbackRepository:
    """Appends and reads ``feedback`` rows."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    def add(self, article_id: int, verdict: Verdict, *, topic: str | None = None,
            alert_id: int | None = None, note: str | None = None, source: str = "web",
            now: datetime | None = None) -> int:
        """Record one verdict; returns its id. Unknown articles raise ``StoreError``."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        with errors("storing feedback"), self._conn.write():
            cur = self._db.execute(
                "INSERT INTO feedback (article_id, topic, alert_id, verdict, note, source,"
                " created_at) VALUES (?,?,?,?,?,?,?)",
                (article_id, topic, alert_id, verdict, note, source, iso(now or utcnow())))
        return last_id(cur)

    def for_article(self, article_id: int) -> list[FeedbackRow]:
        """Every verdict on one article, oldest first."""
        return self._rows("WHERE article_id = ? ORDER BY id", (article_id,))

    def latest(self, *, limit: int = 1000) -> list[FeedbackRow]:
        """The newest verdicts, newest first."""
        return self._rows("ORDER BY id DESC LIMIT ?", (limit,))

    def _rows(self, tail: str, params: tuple[object, ...]) -> list[FeedbackRow]:
        with errors("reading feedback"):
            rows = self._db.execute(
                "SELECT id, article_id, topic, alert_id, verdict, note, source, created_at"
                f" FROM feedback {tail}", params).fetchall()
        return [FeedbackRow(id=r[0], article_id=r[1], topic=r[2], alert_id=r[3], verdict=r[4],
                            note=r[5], source=r[6], created_at=parse_iso(r[7])) for r in rows]

    def target(self, ref: str) -> FeedbackTarget | None:
        """Resolve ``article:ID``, an alert id or an alert key; None when nothing has it."""
        ref = ref.strip()
        with errors("reading feedback"):
            if ref.startswith(ARTICLE_PREFIX):
                number = ref.removeprefix(ARTICLE_PREFIX)
                if not number.isdigit():
                    return None
                row = self._db.execute("SELECT id FROM articles WHERE id = ?", (int(number),)).fetchone()
                return FeedbackTarget(row[0], None, None) if row else None
            by_id = ref.isdigit()
            row = self._db.execute(
                f"SELECT id, article_id, topic FROM alerts WHERE {'id' if by_id else 'alert_key'} = ?",
                (int(ref) if by_id else ref,)).fetchone()
        return FeedbackTarget(row[1], row[0], row[2]) if row else None

    def judged(self, topics: Sequence[str]) -> list[JudgedArticle]:
        """Every judged article with its labels, oldest article first.

        Per (article, topic) the newest verdict counts. A verdict on the whole article
        (no topic) labels the topics it matched when "relevant", and every topic in
        ``topics`` when "not_relevant"; a verdict on a topic overrides it for that topic.
        Topics nobody judged are left out of the labels.
        """
        whole: dict[int, str] = {}
        per_topic: dict[int, dict[str, bool]] = {}
        for row in self._rows("ORDER BY id", ()):  # oldest first: later verdicts overwrite
            if row.topic:
                per_topic.setdefault(row.article_id, {})[row.topic] = row.verdict == "relevant"
            else:
                whole[row.article_id] = row.verdict
        out: list[JudgedArticle] = []
        for article_id in sorted(whole.keys() | per_topic.keys()):
            labels: dict[str, bool] = {}
            if whole.get(article_id) == "relevant":
                labels = dict.fromkeys(self._matched_topics(article_id), True)
            elif whole.get(article_id) == "not_relevant":
                labels = dict.fromkeys(topics, False)
            labels.update(per_topic.get(article_id, {}))
            article = self._article(article_id, labels) if labels else None
            if article is not None:
                out.append(article)
        return out

    def _matched_topics(self, article_id: int) -> list[str]:
        with errors("reading feedback"):
            rows = self._db.execute("SELECT topic FROM matches WHERE article_id = ? ORDER BY topic",
                                    (article_id,)).fetchall()
        return [r[0] for r in rows]

    def _article(self, article_id: int, labels: dict[str, bool]) -> JudgedArticle | None:
        with errors("reading feedback"):
            row = self._db.execute(
                "SELECT a.title, a.body, a.summary, a.published, a.first_seen, a.url, f.name, f.url"
                " FROM articles a LEFT JOIN feeds f ON f.id = a.first_feed_id WHERE a.id = ?",
                (article_id,)).fetchone()
        if row is None:
            return None
        title, body, summary, published, first_seen, url, feed_name, feed_url = row
        # A body pruned by retention leaves the summary: label what is still there.
        return JudgedArticle(article_id=article_id, title=title or "", text=body or summary or "",
                             source=feed_name or feed_url, published=published or first_seen,
                             url=url, labels=labels)
