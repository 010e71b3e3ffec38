"""Full-text search on PostgreSQL: ``SearchRepository``'s interface over a tsvector.

The document is ``articles.search``, a generated ``tsvector`` column (title weight A,
summary B, body D; English stemming, as FTS5's porter tokenizer) with a GIN index
(``schema.PG_BASELINE_DDL``): the article's own INSERT fills it, in the item's
transaction, and a pruned body updates it. ``storage/search.py`` hands a PostgreSQL
connection's searches here, so callers (the web workspace, ``newsmon search``) do not
know which backend answers.

What a user types goes through ``websearch_to_tsquery``, which never raises on syntax
and keeps the operators people expect (``"a phrase"``, ``-word``, ``OR``); ``word*``
(a prefix, which it lacks) is taken out first and added as ``word:*``. Ranked by
``ts_rank`` with weights close to FTS5's bm25 ones (title 10, summary 3, body 1);
``SearchHit.rank`` is the negated rank, so lower is better as with bm25. Highlights
come from ``ts_headline`` with the same ``MARK_START``/``MARK_END`` markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.storage.db import errors
from monitor.storage.search import (
    MARK_END,
    MARK_START,
    ArticleReads,
    SearchFilters,
    SearchPage,
    filter_sql,
    fts_query,
    page_window,
)

__all__ = ["PgSearchRepository", "TsQuery", "ts_query"]

CONFIG = "english"
# ts_rank's weights for D, C, B, A: body 0.1, summary 0.3, title 1.0 (bm25's 1 : 3 : 10).
_RANK_WEIGHTS = "{0.1, 0.1, 0.3, 1.0}"
_PREFIX = re.compile(r'(?<!\S)(-?)(\w+)\*(?=\s|$)')
_HEADLINE_TITLE = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"
_HEADLINE_SNIPPET = (f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=28, MinWords=12,"
                     " MaxFragments=1, FragmentDelimiter=\" … \"")


@dataclass(frozen=True, slots=True)
class TsQuery:
    """A user's query split for PostgreSQL: the text for ``websearch_to_tsquery`` and
    the prefix terms (``word*``, ``-word*``) as a ``to_tsquery`` expression."""

    websearch: str
    prefixes: str  # e.g. "'talk':* & !'rumour':*", "" when none

    @property
    def empty(self) -> bool:
        return not self.websearch.strip() and not self.prefixes

    def sql(self) -> tuple[str, list[object]]:
        """The tsquery expression and its parameters."""
        parts: list[str] = []
        params: list[object] = []
        if self.websearch.strip():
            parts.append(f"websearch_to_tsquery('{CONFIG}', ?)")
            params.append(self.websearch)
        if self.prefixes:
            parts.append(f"to_tsquery('{CONFIG}', ?)")
            params.append(self.prefixes)
        return " && ".join(parts) or "''::tsquery", params


def ts_query(text: str) -> TsQuery:
    """Split ``text`` into what ``websearch_to_tsquery`` takes and the prefix terms (pure)."""
    prefixes: list[str] = []

    def take(match: re.Match[str]) -> str:
        prefixes.append(("!" if match.group(1) else "") + f"'{match.group(2).lower()}':*")
        return " "

    pieces = re.split(r'("[^"]*"?)', text)  # phrases kept whole; prefixes only outside them
    out = []
    for piece in pieces:
        out.append(piece if piece.startswith('"') else _PREFIX.sub(take, piece))
    positive = [p for p in prefixes if not p.startswith("!")]
    rest = " ".join("".join(out).split())
    if not positive and not fts_query(rest):  # exclusions alone: no text query (as FTS5)
        return TsQuery("", "")
    return TsQuery(rest, " & ".join(prefixes))


class PgSearchRepository(ArticleReads):
    """Reads of the tsvector index; the same ``search()`` as ``SearchRepository``."""

    def search(self, query: str, filters: SearchFilters | None = None, *, page: int = 1,
               per_page: int = 20) -> SearchPage:
        """One page of articles matching ``query`` and ``filters``, best first; an empty
        query (or one of exclusions alone) lists the filtered articles newest first."""
        filters = filters or SearchFilters()
        page, per_page, offset, cap = page_window(page, per_page)
        parsed = ts_query(query)
        with errors("searching articles"):
            if not parsed.empty:
                where, params = filter_sql(filters, "a.id")
                expression, query_params = parsed.sql()
                head = f"WITH q AS (SELECT {expression} AS query) "
                clause = "".join(f" AND {w}" for w in where)
                base = f"FROM articles a, q WHERE a.search @@ q.query{clause}"
                ranked = self._db.execute(
                    f"{head}SELECT a.id, ts_rank('{_RANK_WEIGHTS}', a.search, q.query) AS rank_ {base}"
                    " ORDER BY rank_ DESC, a.id DESC LIMIT ? OFFSET ?",
                    [*query_params, *params, per_page, offset]).fetchall()
                counted = self._db.execute(
                    f"{head}SELECT COUNT(*) FROM (SELECT 1 {base} LIMIT ?) AS hits",
                    [*query_params, *params, cap]).fetchone()[0]
                sent = str(self._db.execute(f"SELECT ({expression})::text", query_params)
                           .fetchone()[0])
                ids = [int(r[0]) for r in ranked]
                ranks = {int(r[0]): -float(r[1]) for r in ranked}
                marked = self._highlights(expression, query_params, ids)
            else:
                ids, counted = self._listing(filters, offset, per_page, cap)
                sent, ranks, marked = "", {}, self._plain(ids)
            hits = self._hits(ids, marked, ranks)
        total = int(counted)
        return SearchPage(query=query, fts=sent, total=min(total, cap - 1), page=page,
                          per_page=per_page, hits=hits, total_capped=total >= cap)

    def _highlights(self, expression: str, params: list[object],
                    ids: list[int]) -> dict[int, tuple[str, str]]:
        """The highlighted title and best passage (the body's, else the summary's) of the
        page's articles only: ``ts_headline`` re-parses the text, so never for every hit."""
        if not ids:
            return {}
        rows = self._db.execute(
            f"WITH q AS (SELECT {expression} AS query) SELECT a.id,"
            f" ts_headline('{CONFIG}', coalesce(a.title, ''), q.query, ?),"
            f" ts_headline('{CONFIG}', coalesce(a.body, ''), q.query, ?),"
            f" ts_headline('{CONFIG}', coalesce(a.summary, ''), q.query, ?)"
            " FROM articles a, q WHERE a.id = ANY(?)",
            [*params, _HEADLINE_TITLE, _HEADLINE_SNIPPET, _HEADLINE_SNIPPET, ids]).fetchall()
        return {int(r[0]): (r[1] or "", (r[2] or r[3] or "").strip()) for r in rows}
