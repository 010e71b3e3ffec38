"""The story engine's state: stories, their articles' features, postings, document frequencies.

Stores what it is told, as plain ``records`` rows (storage imports base only;
``monitor.stories.stored`` converts them to the engine's dataclasses).

Tables (migration ``stories``)
  stories          one row per story: label, first/last seen, members and outlets (JSON),
                   centroid (JSON term → weight)
  story_articles   one row per article (by its article key): event time, headline, outlet,
                   vector, fingerprint, and the assignment it got
  story_postings   (term, event time, article) for the articles of the assignment window
                   only (``prune_postings`` drops older ones): the candidate lookup
  story_terms      document frequency per term; ``story_counters`` the document count and
                   the story id sequence

Writes commit with ``lazy_commit``: the pipeline's item transaction, which follows
each assignment, is a full commit, and in WAL mode it makes the earlier frames durable too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from monitor.records import (
    StoryAlertRecord,
    StoryArticleRecord,
    StoryListRow,
    StoryMemberRow,
    StoryRecord,
)
from monitor.storage.db import Connection, errors, iso, parse_iso

STORY_ALERT_PREFIX = "story-"  # monitor.identity.story_alert_key: story-<id>-<channel>-<n>-<topic>

_ARTICLE_COLUMNS = ("article_key, story_id, event_time, headline, source, vector, exact, sample, words,"
                    " wire_credit, is_new_story, similarity, near_dup_of, duplicated_by,"
                    " exact_duplicate, new_outlet, label_changed, outlets_after")
_STORY_COLUMNS = ("story_id, label, label_article_id, first_seen, last_seen, member_ids, outlets, centroid,"
                  " centroid_norm")


def _stamp(moment: datetime) -> float:
    return moment.timestamp()


def _moment(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _parse_seen(text: object) -> datetime:
    """A stored ISO time (``storage.db.iso``) as an aware UTC datetime."""
    return parse_iso(str(text)) or datetime.min.replace(tzinfo=UTC)


def _evidence_texts(text: object) -> tuple[str, ...]:
    """The plain sentences of an ``alerts.evidence`` JSON list."""
    try:
        return tuple(str(e.get("text", "")) for e in json.loads(str(text or "[]")))
    except (ValueError, AttributeError):
        return ()


def _story(row: Sequence[object]) -> StoryRecord:
    return StoryRecord(story_id=str(row[0]), label=str(row[1]), label_article_id=str(row[2]),
                       first_seen=_moment(float(row[3])), last_seen=_moment(float(row[4])),  # type: ignore[arg-type]  # REAL columns
                       member_ids=tuple(json.loads(str(row[5]))), outlets=tuple(json.loads(str(row[6]))),
                       centroid=json.loads(str(row[7])), centroid_norm=float(row[8]))  # type: ignore[arg-type]  # a REAL column


def _article(row: Sequence[object]) -> StoryArticleRecord:
    return StoryArticleRecord(
        article_id=str(row[0]), story_id=str(row[1]), event_time=_moment(float(row[2])),  # type: ignore[arg-type]  # a REAL column
        headline=str(row[3]), source=str(row[4]), vector=json.loads(str(row[5])), exact=str(row[6]),
        sample=bytes(row[7]), words=int(row[8]), wire_credit=bool(row[9]),  # type: ignore[call-overload]  # BLOB and INTEGER columns
        is_new_story=bool(row[10]), similarity=float(row[11]),  # type: ignore[arg-type]  # a REAL column
        near_dup_of=row[12] if row[12] is None else str(row[12]),
        duplicated_by=row[13] if row[13] is None else str(row[13]),
        exact_duplicate=bool(row[14]), new_outlet=bool(row[15]), label_changed=bool(row[16]),
        outlets_after=int(row[17]))  # type: ignore[call-overload]  # an INTEGER column


class StoryRepository:
    """Reads and writes of the story tables (one connection, one thread)."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._db = connection.db

    # -- writes ---------------------------------------------------------------------------

    def reserve_story_numbers(self, count: int) -> range:
        """``count`` consecutive story numbers for the caller alone, in one transaction (a keeper
        takes them in blocks: a new story then costs no transaction of its own)."""
        with errors("numbering stories"), self._conn.lazy_commit(), self._conn.write():
            self._db.execute("INSERT INTO story_counters (name, value) VALUES ('stories', ?)"
                             " ON CONFLICT(name) DO UPDATE SET value = story_counters.value + ?",
                             (count, count))
            last = int(self._db.execute(
                "SELECT value FROM story_counters WHERE name = 'stories'").fetchone()[0])
        return range(last - count + 1, last + 1)

    def save(self, story: StoryRecord, article: StoryArticleRecord, index_terms: Sequence[str],
             document_terms: Iterable[str]) -> None:
        """One assignment: the story as it now is, the article, its postings and its terms' df."""
        with errors(f"storing story {story.story_id}"), self._conn.lazy_commit(), self._conn.write():
            self._save_story(story)
            self._add_article(article, index_terms)
            self._add_document(document_terms)

    def save_story(self, story: StoryRecord) -> None:
        with errors(f"storing story {story.story_id}"), self._conn.lazy_commit(), self._conn.write():
            self._save_story(story)

    def add_article(self, article: StoryArticleRecord, index_terms: Sequence[str]) -> None:
        with errors(f"storing story article {article.article_id}"), self._conn.lazy_commit(), \
                self._conn.write():
            self._add_article(article, index_terms)

    def add_document(self, terms: Iterable[str]) -> None:
        with errors("counting story terms"), self._conn.lazy_commit(), self._conn.write():
            self._add_document(terms)

    def _save_story(self, story: StoryRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO stories ({_STORY_COLUMNS}, size) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (story.story_id, story.label, story.label_article_id, _stamp(story.first_seen),
             _stamp(story.last_seen), json.dumps(list(story.member_ids)),
             json.dumps(list(story.outlets), ensure_ascii=False),
             json.dumps(dict(story.centroid), ensure_ascii=False), story.centroid_norm,
             len(story.member_ids)))

    def _add_article(self, a: StoryArticleRecord, index_terms: Sequence[str]) -> None:
        stamp = _stamp(a.event_time)
        self._db.execute(
            f"INSERT OR REPLACE INTO story_articles ({_ARTICLE_COLUMNS}) VALUES"
            " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.article_id, a.story_id, stamp, a.headline, a.source,
             json.dumps(dict(a.vector), ensure_ascii=False), a.exact, a.sample, a.words,
             int(a.wire_credit), int(a.is_new_story), a.similarity, a.near_dup_of, a.duplicated_by,
             int(a.exact_duplicate), int(a.new_outlet), int(a.label_changed), a.outlets_after))
        self._db.conn.executemany(
            "INSERT OR IGNORE INTO story_postings (term, event_time, article_key) VALUES (?,?,?)",
            [(term, stamp, a.article_id) for term in index_terms])

    def _add_document(self, terms: Iterable[str]) -> None:
        self._db.conn.executemany(
            "INSERT INTO story_terms (term, df) VALUES (?, 1)"
            " ON CONFLICT(term) DO UPDATE SET df = story_terms.df + 1",
            [(t,) for t in set(terms)])
        self._db.execute("INSERT INTO story_counters (name, value) VALUES ('documents', 1)"
                         " ON CONFLICT(name) DO UPDATE SET value = story_counters.value + 1")

    def prune_postings(self, before: datetime) -> int:
        """Drop postings of articles older than ``before`` (they can no longer be candidates)."""
        with errors("pruning story postings"), self._conn.lazy_commit(), self._conn.write():
            cur = self._db.execute("DELETE FROM story_postings WHERE event_time < ?", (_stamp(before),))
            return int(cur.rowcount)

    # -- reads for the assigner -------------------------------------------------------------

    def story(self, story_id: str) -> StoryRecord | None:
        with errors("reading a story"):
            row = self._db.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE story_id = ?",
                                   (story_id,)).fetchone()
        return _story(row) if row else None

    def article(self, article_key: str) -> StoryArticleRecord | None:
        with errors("reading a story article"):
            row = self._db.execute(f"SELECT {_ARTICLE_COLUMNS} FROM story_articles WHERE article_key = ?",
                                   (article_key,)).fetchone()
        return _article(row) if row else None

    def candidates(self, terms: Sequence[str], since: datetime, until: datetime,
                   limit: int, busy: int) -> list[str]:
        """Articles in [since, until] sharing the most of ``terms`` (weighted by rank, as in memory);
        a term with more than ``busy`` postings in the range is passed over."""
        if not terms:
            return []
        low, high = _stamp(since), _stamp(until)
        weights = {term: 1.0 / (1 + rank * 0.1) for rank, term in enumerate(terms)}
        marks = ",".join("?" * len(weights))
        with errors("finding story candidates"):
            busy_terms = {r[0] for r in self._db.execute(
                f"SELECT term FROM story_postings WHERE term IN ({marks}) AND event_time BETWEEN ? AND ?"
                " GROUP BY term HAVING COUNT(*) > ?", [*weights, low, high, busy])}
            kept = [t for t in weights if t not in busy_terms]
            if not kept:
                return []
            cases = " ".join("WHEN ? THEN ?" for _ in kept)
            marks = ",".join("?" * len(kept))
            params: list[object] = [v for t in kept for v in (t, weights[t])]
            rows = self._db.execute(
                f"SELECT article_key, SUM(CASE term {cases} END) AS shared FROM story_postings"
                f" WHERE term IN ({marks}) AND event_time BETWEEN ? AND ?"
                " GROUP BY article_key ORDER BY shared DESC, article_key LIMIT ?",
                [*params, *kept, low, high, limit]).fetchall()
        return [str(r[0]) for r in rows]

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        wanted = list(set(terms))
        out: dict[str, int] = {}
        with errors("reading story terms"):
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                out.update((str(t), int(df)) for t, df in self._db.execute(
                    f"SELECT term, df FROM story_terms WHERE term IN ({','.join('?' * len(chunk))})",
                    chunk))
        return out

    def all_document_frequencies(self) -> Iterator[tuple[str, int]]:
        with errors("reading story terms"):
            yield from ((str(t), int(df)) for t, df in self._db.execute("SELECT term, df FROM story_terms"))

    def counter(self, name: str) -> int:
        """``documents`` (articles counted into the df) or ``stories`` (the id sequence)."""
        with errors("reading story counters"):
            row = self._db.execute("SELECT value FROM story_counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def window_articles(self, since: datetime) -> list[tuple[StoryArticleRecord, tuple[str, ...]]]:
        """The articles with event time ≥ ``since`` and their index terms, oldest first (a rebuild)."""
        with errors("reading the story window"):
            rows = self._db.execute(f"SELECT {_ARTICLE_COLUMNS} FROM story_articles WHERE event_time >= ?"
                                    " ORDER BY event_time, article_key", (_stamp(since),)).fetchall()
            postings: dict[str, list[str]] = {}
            for term, key in self._db.execute(
                    "SELECT term, article_key FROM story_postings WHERE event_time >= ?",
                    (_stamp(since),)):
                postings.setdefault(str(key), []).append(str(term))
        return [(a, tuple(postings.get(a.article_id, ()))) for a in map(_article, rows)]

    def latest_event_time(self) -> datetime | None:
        """The newest article's event time (where a rebuilt window ends), None when empty."""
        with errors("reading the story window"):
            row = self._db.execute("SELECT MAX(event_time) FROM story_articles").fetchone()
        return _moment(float(row[0])) if row and row[0] is not None else None

    def window_stories(self, since: datetime) -> list[StoryRecord]:
        with errors("reading the story window"):
            rows = self._db.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE last_seen >= ?",
                                    (_stamp(since),)).fetchall()
        return [_story(r) for r in rows]

    # -- alert identity ---------------------------------------------------------------------

    def story_alerts(self, story_id: str) -> list[StoryAlertRecord]:
        """The outbox rows keyed to this story, with the story's outlet count when each was made."""
        prefix = f"{STORY_ALERT_PREFIX}{story_id}-"
        with errors("reading a story's alerts"):
            rows = self._db.execute(
                "SELECT a.channel, a.topic, a.alert_key, COALESCE(sa.outlets_after, 0), a.evidence, a.body"
                " FROM alerts a"
                " LEFT JOIN articles ar ON ar.id = a.article_id"
                " LEFT JOIN story_articles sa ON sa.article_key = ar.dedup_key"
                " WHERE a.alert_key >= ? AND a.alert_key < ? ORDER BY a.id",
                (prefix, prefix[:-1] + chr(ord("-") + 1))).fetchall()
        return [StoryAlertRecord(channel=str(c), topic=str(t or ""), alert_key=str(k), outlets=int(o),
                                 evidence=_evidence_texts(e), note=str(b or ""))
                for c, t, k, o, e, b in rows]

    # -- rates for bursts -------------------------------------------------------------------

    def story_seen_times(self, story_id: str, since: datetime) -> list[datetime]:
        """When the story's stored articles were first seen, those seen since ``since``, oldest first
        (the article being assigned is not stored yet: the caller counts it)."""
        with errors("reading a story's rate"):
            rows = self._db.execute(
                "SELECT ar.first_seen FROM story_articles sa"
                " JOIN articles ar ON ar.dedup_key = sa.article_key"
                " WHERE sa.story_id = ? AND ar.first_seen >= ? ORDER BY ar.first_seen",
                (story_id, iso(since))).fetchall()
        return [_parse_seen(r[0]) for r in rows]

    def story_first_seen(self, story_id: str) -> datetime | None:
        """When the story's first stored article was first seen (how much history it has)."""
        with errors("reading a story's rate"):
            row = self._db.execute(
                "SELECT MIN(ar.first_seen) FROM story_articles sa"
                " JOIN articles ar ON ar.dedup_key = sa.article_key"
                " WHERE sa.story_id = ?", (story_id,)).fetchone()
        return _parse_seen(row[0]) if row and row[0] else None

    def topic_match_times(self, topic: str, since: datetime) -> list[datetime]:
        """When the topic's matches since ``since`` were stored, oldest first (index topic, created_at)."""
        with errors("reading a topic's rate"):
            rows = self._db.execute(
                "SELECT created_at FROM matches WHERE topic = ? AND created_at >= ? ORDER BY created_at",
                (topic, iso(since))).fetchall()
        return [_parse_seen(r[0]) for r in rows]

    def topic_first_match(self, topic: str) -> datetime | None:
        with errors("reading a topic's rate"):
            row = self._db.execute("SELECT MIN(created_at) FROM matches WHERE topic = ?", (topic,)).fetchone()
        return _parse_seen(row[0]) if row and row[0] else None

    # -- reads for the CLI ------------------------------------------------------------------

    def list_stories(self, *, since: datetime | None = None, topic: str | None = None,
                     limit: int = 200) -> list[StoryListRow]:
        """Stories last seen since ``since``, newest first, with their topics (from the matches)."""
        where, params = ["1 = 1"], []
        if since is not None:
            where.append("s.last_seen >= ?")
            params.append(_stamp(since))
        with errors("listing stories"):
            rows = self._db.execute(
                "SELECT s.story_id, s.label, s.size, s.outlets, s.first_seen, s.last_seen,"
                " (SELECT group_concat(DISTINCT m.topic) FROM story_articles sa"
                "  JOIN articles ar ON ar.dedup_key = sa.article_key JOIN matches m ON m.article_id = ar.id"
                "  WHERE sa.story_id = s.story_id)"
                f" FROM stories s WHERE {' AND '.join(where)} ORDER BY s.last_seen DESC, s.story_id DESC",
                params).fetchall()
        out = []
        for story_id, label, size, outlets, first, last, topics in rows:
            topic_list = tuple(sorted(set(str(topics).split(",")))) if topics else ()
            if topic is not None and topic not in topic_list:
                continue
            out.append(StoryListRow(story_id=str(story_id), label=str(label), size=int(size),
                                    outlets=len(json.loads(outlets)), topics=topic_list,
                                    first_seen=_moment(first), last_seen=_moment(last)))
            if len(out) >= limit:
                break
        return out

    def story_members(self, story_id: str) -> list[StoryMemberRow]:
        with errors("reading a story's articles"):
            rows = self._db.execute(
                "SELECT sa.article_key, sa.event_time, sa.source, sa.headline, ar.url,"
                " (SELECT group_concat(m.topic) FROM matches m WHERE m.article_id = ar.id),"
                " sa.near_dup_of, sa.similarity FROM story_articles sa"
                " LEFT JOIN articles ar ON ar.dedup_key = sa.article_key"
                " WHERE sa.story_id = ? ORDER BY sa.event_time, sa.article_key", (story_id,)).fetchall()
        return [StoryMemberRow(article_key=str(k), event_time=_moment(t), source=str(s), headline=str(h),
                               url=u, topics=tuple(sorted(str(topics).split(","))) if topics else (),
                               near_dup_of=d, similarity=float(sim))
                for k, t, s, h, u, topics, d, sim in rows]

