"""The repositories' SQL (written for SQLite) as PostgreSQL runs it (pure: text in, text out).

Most of newsmon's SQL is portable as written (``INSERT ... ON CONFLICT``, ``COALESCE``,
``CASE``, window functions). What differs is translated here, once, by rule, so the
repository code stays one text for both backends:

  ``?``                       → ``%s`` (psycopg's placeholder); a literal ``%`` → ``%%``
  ``INSERT OR IGNORE INTO t`` → ``INSERT INTO t ... ON CONFLICT DO NOTHING``
  ``INSERT OR REPLACE INTO t (cols)`` → ``... ON CONFLICT (pk) DO UPDATE SET col = EXCLUDED.col``
                                 (the key from ``PRIMARY_KEYS``)
  ``group_concat([DISTINCT] x)`` → ``string_agg([DISTINCT] x, ',')``
  an INSERT into a table with an ``id`` key, without RETURNING → ``... RETURNING id``
                                 (where SQLite's ``cursor.lastrowid`` comes from: ``returns_id``)

SQL that differs in meaning rather than in spelling (full-text search, PRAGMAs, VACUUM,
backup, row locks) is written per dialect where it is used, never translated.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["ID_TABLES", "PRIMARY_KEYS", "Translated", "to_postgres"]

# Tables whose key is an integer ``id`` the database assigns (SQLite's rowid).
ID_TABLES = frozenset({"feeds", "articles", "items", "matches", "alerts", "deliveries", "cycles",
                       "feedback"})
# The conflict target of ``INSERT OR REPLACE`` per table (its primary key).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "stories": ("story_id",), "story_articles": ("article_key",), "meta": ("key",),
    "channel_state": ("channel",), "story_terms": ("term",), "story_counters": ("name",),
    "story_postings": ("term", "event_time", "article_key"),
}

_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+(?P<verb>IGNORE|REPLACE)\s+)?INTO\s+(?P<table>\w+)"
                     r"\s*(?:\((?P<columns>[^)]*)\))?", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_GROUP_CONCAT = re.compile(r"\bgroup_concat\(\s*(DISTINCT\s+)?([\w.]+)\s*\)", re.IGNORECASE)


class Translated(str):
    """A translated statement; ``returns_id`` when it ends in the added ``RETURNING id``."""

    returns_id: bool = False


def _placeholders(sql: str) -> str:
    """``?`` → ``%s`` outside quoted literals and identifiers; every ``%`` doubled."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


def _replace_clause(table: str, columns: str | None) -> str:
    keys = PRIMARY_KEYS.get(table)
    if keys is None or not columns:
        raise ValueError(f"INSERT OR REPLACE INTO {table}: no known key or column list to translate")
    names = [c.strip() for c in columns.split(",") if c.strip()]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in keys)
    target = ", ".join(keys)
    return (f" ON CONFLICT ({target}) DO UPDATE SET {updates}" if updates
            else f" ON CONFLICT ({target}) DO NOTHING")


@lru_cache(maxsize=2048)
def to_postgres(sql: str, *, want_id: bool = True) -> Translated:
    """``sql`` (SQLite spelling) as PostgreSQL runs it; see the module docstring.

    ``want_id``: add ``RETURNING id`` to an INSERT into an ``ID_TABLES`` table (not
    for ``executemany``, whose ids nobody reads)."""
    text = _GROUP_CONCAT.sub(lambda m: f"string_agg({m.group(1) or ''}{m.group(2)}, ',')", sql)
    returns_id = False
    insert = _INSERT.match(text)
    if insert is not None:
        verb, table = (insert.group("verb") or "").upper(), insert.group("table")
        if verb:
            text = text[:insert.start()] + re.sub(r"\s+OR\s+(IGNORE|REPLACE)", "",
                                                  text[insert.start():insert.end()], count=1,
                                                  flags=re.IGNORECASE) + text[insert.end():]
            returning = _RETURNING.search(text)
            head, tail = (text[:returning.start()].rstrip(), " " + text[returning.start():]) \
                if returning else (text.rstrip(), "")
            clause = (" ON CONFLICT DO NOTHING" if verb == "IGNORE"
                      else _replace_clause(table, insert.group("columns")))
            text = head + clause + tail
        if want_id and table in ID_TABLES and not _RETURNING.search(text):
            text = text.rstrip().rstrip(";") + " RETURNING id"
            returns_id = True
    result = Translated(_placeholders(text))
    result.returns_id = returns_id
    return result
