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
from typing import Any

from monitor.storage.db import POSTGRESQL, Connection, errors, iso, parse_iso

__all__ = ["MARK_END", "MARK_START", "ArticleReads", "SearchFilters", "SearchHit", "SearchPage",
           "SearchRepository", "filter_sql", "fts_query", "page_window", "strip_marks"]

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
    total: int  # exact, or a lower bound when ``total_capped``
    page: int
    per_page: int
    hits: tuple[SearchHit, ...] = field(default=())
    total_capped: bool = False  # more than ``total`` results (counting stopped there)
    ranked_within: int | None = None  # ranked among the newest this many hits only (see RANK_WINDOW)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def total_text(self) -> str:
        """``"1,234"``, or ``"1,000+"`` when counting stopped."""
        return f"{self.total:,}" + ("+" if self.total_capped else "")


# Counting every hit of a common word costs as much as ranking them: counting stops here
# (the page says "1,000+"), always past the page asked for.
COUNT_CAP = 1000
# A query with more hits than COUNT_CAP is ranked among its newest RANK_WINDOW hits: bm25 over
# every hit of a word in nearly every article takes ~0.3 s at 100,000 articles; over 4,000, ~25 ms.
# The page says so; a date range or another word reaches further back.
RANK_WINDOW = 4000
_SNIPPET_TOKENS = 28


def page_window(page: int, per_page: int) -> tuple[int, int, int, int]:
    """``(page, per_page, offset, cap)``: the page asked for, clamped (1 to 200 a page), its
    offset, and where counting stops (``COUNT_CAP``, always past the page asked for)."""
    page, per_page = max(1, page), max(1, min(per_page, 200))
    offset = (page - 1) * per_page
    return page, per_page, offset, max(COUNT_CAP, offset + per_page + 1)


class ArticleReads:
    """What both backends' searches read beside their index: the listing without a text
    query (newest first), and a page's articles, topics and plain snippets. Only the
    spelling of "id in this list" differs: ``IN (?, ...)`` on SQLite, ``= ANY(?)`` on
    PostgreSQL (one array parameter)."""

    def __init__(self, connection: Connection) -> None:
        self._db = connection.db
        self._any = connection.dialect == POSTGRESQL

    def _in(self, column: str, ids: list[int]) -> tuple[str, list[object]]:
        if self._any:
            return f"{column} = ANY(?)", [ids]
        return f"{column} IN ({','.join('?' * len(ids))})", list(ids)

    def _listing(self, filters: SearchFilters, offset: int, per_page: int,
                 cap: int) -> tuple[list[int], int]:
        """The filtered articles' ids newest first (one page), and their count up to ``cap``."""
        where, params = filter_sql(filters, "a.id")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        ids = [int(r[0]) for r in self._db.execute(
            f"SELECT a.id FROM articles a{clause} ORDER BY a.first_seen DESC, a.id DESC"
            " LIMIT ? OFFSET ?", [*params, per_page, offset])]
        counted = self._db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM articles a{clause} LIMIT ?) AS listed",
            [*params, cap]).fetchone()[0]
        return ids, int(counted)

    def _hits(self, ids: list[int], marked: dict[int, tuple[str, str]],
              ranks: dict[int, float]) -> tuple[SearchHit, ...]:
        """The page's hits in the order of ``ids``, with their highlighted title and snippet."""
        meta = self._articles(ids)
        topics = self._topics(ids)
        return tuple(SearchHit(
            article_id=i, url=meta[i][0], first_seen=parse_iso(meta[i][1]),
            published=parse_iso(meta[i][2]), title=marked[i][0], snippet=marked[i][1],
            topics=topics.get(i, ()), rank=ranks.get(i)) for i in ids if i in meta and i in marked)

    def _plain(self, ids: list[int]) -> dict[int, tuple[str, str]]:
        """Titles and the bodies' first characters, for a listing without a text query."""
        if not ids:
            return {}
        member, params = self._in("id", ids)
        rows = self._db.execute(
            f"SELECT id, title, substr(coalesce(body, ''), 1, 240), summary FROM articles WHERE {member}",
            params)
        return {int(r[0]): (r[1] or "", (r[2] or r[3] or "").strip()) for r in rows}

    def _articles(self, ids: list[int]) -> dict[int, tuple[str | None, str | None, str | None]]:
        if not ids:
            return {}
        member, params = self._in("id", ids)
        rows = self._db.execute(f"SELECT id, url, first_seen, published FROM articles WHERE {member}",
                                params)
        return {int(r[0]): (r[1], r[2], r[3]) for r in rows}

    def _topics(self, ids: list[int]) -> dict[int, tuple[str, ...]]:
        if not ids:
            return {}
        member, params = self._in("article_id", ids)
        found: dict[int, list[str]] = {}
        for article_id, topic in self._db.execute(
                f"SELECT article_id, topic FROM matches WHERE {member} ORDER BY score DESC, id", params):
            found.setdefault(int(article_id), []).append(topic)
        return {k: tuple(v) for k, v in found.items()}


class SearchRepository(ArticleReads):
    """Reads of the full-text index (the writes are in ``items.record_item``).

    Query shape (``bench/web_bench.py``): the ranking runs inside FTS5 alone
    (``ORDER BY rank`` with the bm25 weights, filters as index lookups, ``LIMIT`` there),
    ``highlight``/``snippet`` run only for the page's rows, the count stops at
    ``COUNT_CAP``, and a query with more hits than that is ranked among its newest
    ``RANK_WINDOW``."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._postgres: Any = None  # PostgreSQL answers through storage/pg_search.py
        if connection.dialect == POSTGRESQL:
            from monitor.storage.pg_search import PgSearchRepository

            self._postgres = PgSearchRepository(connection)

    def search(self, query: str, filters: SearchFilters | None = None, *, page: int = 1,
               per_page: int = 20) -> SearchPage:
        """One page of articles matching ``query`` and ``filters``, best first.

        An empty query (or one of exclusions alone) lists the filtered articles
        newest first."""
        if self._postgres is not None:
            return self._postgres.search(query, filters, page=page, per_page=per_page)
        filters = filters or SearchFilters()
        page, per_page, offset, cap = page_window(page, per_page)
        fts = fts_query(query)
        with errors("searching articles"):
            if fts:
                where, params = filter_sql(filters, "f.rowid")
                clause = "".join(f" AND {w}" for w in where)
                base = f"FROM articles_fts f WHERE articles_fts MATCH ?{clause}"
                counted = self._db.execute(f"SELECT COUNT(*) FROM (SELECT 1 {base} LIMIT ?)",
                                           [fts, *params, cap]).fetchone()[0]
                ranked, ranked_within = self._ranked(fts, base, params, counted >= cap, offset, per_page)
                ids = [int(r[0]) for r in ranked]
                ranks = {int(r[0]): float(r[1]) for r in ranked}
                marked = self._highlights(fts, ids)
            else:
                ids, counted = self._listing(filters, offset, per_page, cap)
                ranks, marked, ranked_within = {}, self._plain(ids), None
            hits = self._hits(ids, marked, ranks)
        total = int(counted)
        return SearchPage(query=query, fts=fts, total=min(total, cap - 1), page=page, per_page=per_page,
                          hits=hits, total_capped=total >= cap, ranked_within=ranked_within)

    def _ranked(self, fts: str, base: str, params: list[object], many: bool, offset: int,
                per_page: int) -> tuple[list[Any], int | None]:
        """The page's (rowid, bm25) rows, and the window they were ranked in (None: all hits).

        With ``many`` hits, bm25 runs over the newest ``RANK_WINDOW`` hits of the words (found
        by walking the index newest first, without ranking: cheap), the filters applied
        inside; the window doubles while it holds too few filtered rows for the page."""
        reach = max(RANK_WINDOW, offset + per_page)
        while many:
            bound = self._db.execute(
                "SELECT rowid FROM articles_fts WHERE articles_fts MATCH ? ORDER BY rowid DESC"
                " LIMIT 1 OFFSET ?", (fts, reach - 1)).fetchone()
            if bound is None:
                break  # the window would hold every hit: rank them all
            rows = self._db.execute(
                f"SELECT f.rowid, f.rank {base} AND f.rowid >= ? AND f.rank MATCH ? ORDER BY f.rank"
                " LIMIT ? OFFSET ?", [fts, *params, int(bound[0]), _RANK, per_page, offset]).fetchall()
            if len(rows) == per_page:
                return rows, reach
            reach *= 4
        rows = self._db.execute(
            f"SELECT f.rowid, f.rank {base} AND f.rank MATCH ? ORDER BY f.rank LIMIT ? OFFSET ?",
            [fts, *params, _RANK, per_page, offset]).fetchall()
        return rows, None

    def _highlights(self, fts: str, ids: list[int]) -> dict[int, tuple[str, str]]:
        """The highlighted title and best passage of each article (its body's, else its summary's)."""
        start, end = MARK_START, MARK_END
        out: dict[int, tuple[str, str]] = {}
        for article_id in ids:  # one indexed lookup each: FTS5 seeks the rowid inside the match
            row = self._db.execute(
                f"SELECT highlight(articles_fts, 0, '{start}', '{end}'),"
                f" snippet(articles_fts, 2, '{start}', '{end}', '…', {_SNIPPET_TOKENS}),"
                f" snippet(articles_fts, 1, '{start}', '{end}', '…', {_SNIPPET_TOKENS})"
                " FROM articles_fts WHERE articles_fts MATCH ? AND rowid = ?", (fts, article_id)).fetchone()
            if row is not None:
                out[article_id] = (row[0] or "", (row[1] or row[2] or "").strip())
        return out


_RANK = "bm25(" + ", ".join(map(str, _WEIGHTS)) + ")"


def filter_sql(filters: SearchFilters, article: str) -> tuple[list[str], list[object]]:
    """The filters as conditions on the article id expression ``article`` (``a.id`` or
    ``f.rowid``): each one an index lookup (matches by article and topic, items by
    article, articles by first seen), never a scan."""
    where: list[str] = []
    params: list[object] = []
    if filters.topic:
        where.append(f"EXISTS (SELECT 1 FROM matches m WHERE m.article_id = {article} AND m.topic = ?)")
        params.append(filters.topic)
    elif filters.matched_only:
        where.append(f"EXISTS (SELECT 1 FROM matches m WHERE m.article_id = {article})")
    if filters.feed:
        where.append(f"EXISTS (SELECT 1 FROM items i JOIN feeds fd ON fd.id = i.feed_id"
                     f" WHERE i.article_id = {article} AND (fd.name = ? OR fd.url = ?))")
        params += [filters.feed, filters.feed]
    if filters.since is not None or filters.until is not None:
        if article == "a.id":
            for op, moment in ((">=", filters.since), ("<", filters.until)):
                if moment is not None:
                    where.append(f"a.first_seen {op} ?")
                    params.append(iso(moment))
        else:
            bounds, values = [], []
            for op, moment in ((">=", filters.since), ("<", filters.until)):
                if moment is not None:
                    bounds.append(f"first_seen {op} ?")
                    values.append(iso(moment))
            where.append(f"{article} IN (SELECT id FROM articles WHERE {' AND '.join(bounds)})")
            params += values
    return where, params
