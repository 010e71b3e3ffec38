"""Full-text search over stored articles (SQLite FTS5, ``articles_fts``).

The index is written in the item's own transaction (``items.record_item``) and
kept right by triggers when a body is pruned (``schema._migration_search_index``).
Results are ranked with bm25 (a title hit weighs most), highlighted with
``highlight()``/``snippet()`` and paginated.

What a user types is never handed to FTS5 as syntax: ``fts_query`` turns it into
quoted terms, so a stray ``"``, ``AND``, ``NEAR(`` or ``col:`` cannot raise. It
keeps three operators people expect: ``"a phrase"``, ``-word`` (without) and
``word*`` (prefix); ``OR`` between two terms means either.

Highlights come back wrapped in ``MARK_START``/``MARK_END`` (control characters no
article text holds after extraction), so each caller escapes the text first and
then turns the markers into its own markup (``<mark>`` on a page, bold in a terminal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from monitor.storage.db import Connection, errors, iso, parse_iso

__all__ = ["MARK_END", "MARK_START", "SearchFilters", "SearchHit", "SearchPage", "SearchRepository",
           "fts_query", "strip_marks"]

MARK_START, MARK_END = "\x02", "\x03"
# bm25 weights of the indexed columns: title, summary, body.
_WEIGHTS = (10.0, 3.0, 1.0)
_TOKEN = re.compile(r'"[^"]*"?|\S+')
_WORD = re.compile(r"\w+")


def fts_query(text: str) -> str:
    """The user's words as a safe FTS5 query ("" when nothing searchable is left).

    Every term becomes a quoted string (quotes inside doubled); ``-term`` becomes
    ``NOT``, ``term*`` a prefix, ``OR`` between terms is kept (``AND`` is implied); anything else
    that FTS5 would read as syntax is just text.
    """
    positive: list[str] = []
    negative: list[str] = []
    pending_or = False
    for token in _TOKEN.findall(text):
        if token == "OR":
            pending_or = bool(positive)
            continue
        if token == "AND":  # terms are all required anyway
            continue
        negate = token.startswith("-") and len(token) > 1
        if negate:
            token = token[1:]
        phrase = token.startswith('"')
        prefix = not phrase and token.endswith("*")
        words = _WORD.findall(token.strip('"'))
        if not words:
            continue
        term = '"' + " ".join(words).replace('"', '""') + '"' + ("*" if prefix else "")
        if negate:
            negative.append(term)
        elif pending_or:
            positive[-1] = f"({positive[-1]} OR {term})"
        else:
            positive.append(term)
        pending_or = False
    if not positive:  # FTS5 has no "everything but": a query of exclusions alone is none
        return ""
    query = " AND ".join(positive)
    for term in negative:
        query = f"({query}) NOT {term}"
    return query


def strip_marks(text: str) -> str:
    """A highlighted text without its markers."""
    return text.replace(MARK_START, "").replace(MARK_END, "")


@dataclass(frozen=True, slots=True)
class SearchFilters:
    topic: str | None = None
    feed: str | None = None  # a feed's name or URL
    since: datetime | None = None  # first seen at or after
    until: datetime | None = None  # first seen before
    matched_only: bool = False


@dataclass(frozen=True, slots=True)
class SearchHit:
    article_id: int
    title: str  # highlighted (MARK_START/MARK_END)
    snippet: str  # the best passage of the body (or summary), highlighted
    url: str | None
    first_seen: datetime | None
    published: datetime | None
    topics: tuple[str, ...]  # topics the article matched when it was recorded
    rank: float | None  # bm25 (lower is better); None for a filter-only listing


@dataclass(frozen=True, slots=True)
class SearchPage:
    query: str
    fts: str  # what was sent to FTS5 ("" = no text query: newest first)
    total: int
    page: int
    per_page: int
    hits: tuple[SearchHit, ...] = field(default=())

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class SearchRepository:
    """Reads of the full-text index (the writes are in ``items.record_item``)."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection.db

    def search(self, query: str, filters: SearchFilters | None = None, *, page: int = 1,
               per_page: int = 20) -> SearchPage:
        """One page of articles matching ``query`` and ``filters``, best first.

        An empty query (or one of exclusions alone) lists the filtered articles
        newest first."""
        filters = filters or SearchFilters()
        page, per_page = max(1, page), max(1, min(per_page, 200))
        fts = fts_query(query)
        where, params = _filter_sql(filters)
        if fts:
            where.insert(0, "articles_fts MATCH ?")
            params.insert(0, fts)
            source = "articles_fts JOIN articles a ON a.id = articles_fts.rowid"
            start, end = MARK_START, MARK_END
            columns = (f"highlight(articles_fts, 0, '{start}', '{end}'),"
                       f" snippet(articles_fts, 2, '{start}', '{end}', '…', 28),"
                       f" snippet(articles_fts, 1, '{start}', '{end}', '…', 28),"
                       f" bm25(articles_fts, {', '.join(map(str, _WEIGHTS))})")
            order = "rank_"
        else:
            source = "articles a"
            columns = "a.title, substr(coalesce(a.body, ''), 1, 240), a.summary, NULL"
            order = "a.first_seen DESC, a.id DESC"
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        sql = (f"SELECT a.id, a.url, a.first_seen, a.published, {columns} AS rank_ FROM {source}"
               f"{clause} ORDER BY {order} LIMIT ? OFFSET ?")
        with errors("searching articles"):
            total = int(self._db.execute(f"SELECT COUNT(*) FROM {source}{clause}", params)
                        .fetchone()[0])
            rows = self._db.execute(sql, [*params, per_page, (page - 1) * per_page]).fetchall()
            topics = self._topics([int(r[0]) for r in rows])
        hits = tuple(SearchHit(
            article_id=int(r[0]), url=r[1], first_seen=parse_iso(r[2]), published=parse_iso(r[3]),
            title=r[4] or "", snippet=(r[5] or r[6] or "").strip(),
            topics=topics.get(int(r[0]), ()), rank=r[7]) for r in rows)
        return SearchPage(query=query, fts=fts, total=total, page=page, per_page=per_page, hits=hits)

    def _topics(self, ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        found: dict[int, list[str]] = {}
        for article_id, topic in self._db.execute(
                f"SELECT article_id, topic FROM matches WHERE article_id IN ({marks})"
                " ORDER BY score DESC", ids):
            found.setdefault(int(article_id), []).append(topic)
        return {k: tuple(v) for k, v in found.items()}


def _filter_sql(filters: SearchFilters) -> tuple[list[str], list[object]]:
    where: list[str] = []
    params: list[object] = []
    if filters.topic:
        where.append("EXISTS (SELECT 1 FROM matches m WHERE m.article_id = a.id AND m.topic = ?)")
        params.append(filters.topic)
    elif filters.matched_only:
        where.append("EXISTS (SELECT 1 FROM matches m WHERE m.article_id = a.id)")
    if filters.feed:
        where.append("EXISTS (SELECT 1 FROM items i JOIN feeds f ON f.id = i.feed_id"
                     " WHERE i.article_id = a.id AND (f.name = ? OR f.url = ?))")
        params += [filters.feed, filters.feed]
    if filters.since is not None:
        where.append("a.first_seen >= ?")
        params.append(iso(filters.since))
    if filters.until is not None:
        where.append("a.first_seen < ?")
        params.append(iso(filters.until))
    return where, params
