"""The assigner's state kept in a store of plain rows (``monitor.records``), two ways.

Storage may not import this stage, so it keeps ``StoryRecord``/``StoryArticleRecord``
rows; this module converts them and implements the ``StoryIndex`` and
``TermStatistics`` Protocols over anything offering ``StoryRows`` (the SQLite
``storage.stories.StoryRepository`` does):

* ``StoredStoryIndex``: every read is a query (candidates from the postings table);
* ``WindowStoryIndex``: the assignment window in memory (``InMemoryStoryIndex``),
  rebuilt from the rows at start-up, every change written through. Chosen for the
  daemon by measurement (docs/stories.md: assign cost SQLite vs memory).

Both buffer the writes of one assignment; ``flush()`` commits them in one
transaction (the ``StoryKeeper`` calls it after each ``assign``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from monitor.records import StoryArticleRecord, StoryRecord
from monitor.stories.clustering import Assignment, InMemoryStoryIndex, StoredArticle, Story
from monitor.stories.fingerprint import Fingerprint


class StoryRows(Protocol):
    """What the stored indexes need of storage (``storage.stories.StoryRepository``)."""

    def reserve_story_numbers(self, count: int) -> range: ...

    def save(self, story: StoryRecord, article: StoryArticleRecord, index_terms: Sequence[str],
             document_terms: Iterable[str]) -> None: ...

    def story(self, story_id: str) -> StoryRecord | None: ...

    def article(self, article_key: str) -> StoryArticleRecord | None: ...

    def candidates(self, terms: Sequence[str], since: datetime, until: datetime,
                   limit: int, busy: int) -> list[str]: ...

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]: ...

    def all_document_frequencies(self) -> Iterator[tuple[str, int]]: ...

    def counter(self, name: str) -> int: ...

    def window_articles(self, since: datetime) -> list[tuple[StoryArticleRecord, tuple[str, ...]]]: ...

    def window_stories(self, since: datetime) -> list[StoryRecord]: ...

    def latest_event_time(self) -> datetime | None: ...

    def prune_postings(self, before: datetime) -> int: ...


# --- conversions ------------------------------------------------------------------------------


def story_to_record(story: Story) -> StoryRecord:
    return StoryRecord(story_id=story.story_id, label=story.label, label_article_id=story.label_article_id,
                       first_seen=story.first_seen, last_seen=story.last_seen,
                       member_ids=tuple(story.member_ids), outlets=tuple(story.outlets),
                       centroid=dict(story.centroid), centroid_norm=story.centroid_norm)


def story_from_record(row: StoryRecord) -> Story:
    return Story(story_id=row.story_id, label=row.label, label_article_id=row.label_article_id,
                 first_seen=row.first_seen, last_seen=row.last_seen, member_ids=list(row.member_ids),
                 outlets=list(row.outlets), centroid=dict(row.centroid), centroid_norm=row.centroid_norm)


def article_to_record(article: StoredArticle, assignment: Assignment | None = None,
                      outlets_after: int = 0) -> StoryArticleRecord:
    fp = article.fingerprint
    record = StoryArticleRecord(article_id=article.article_id, story_id=article.story_id,
                                event_time=article.event_time, headline=article.headline,
                                source=article.source, vector=dict(article.vector),
                                exact=fp.exact, sample=fp.sample.astype(np.uint64).tobytes(),
                                words=fp.words, wire_credit=fp.wire_credit,
                                outlets_after=outlets_after)
    if assignment is None:
        return record
    return replace(record, is_new_story=assignment.is_new_story,
                   similarity=assignment.similarity, near_dup_of=assignment.near_dup_of,
                   duplicated_by=assignment.duplicated_by,
                   exact_duplicate=assignment.exact_duplicate, new_outlet=assignment.new_outlet,
                   label_changed=assignment.label_changed)


def article_from_record(row: StoryArticleRecord) -> StoredArticle:
    fp = Fingerprint(exact=row.exact, sample=np.frombuffer(row.sample, dtype=np.uint64), words=row.words,
                     wire_credit=row.wire_credit)
    return StoredArticle(article_id=row.article_id, story_id=row.story_id, event_time=row.event_time,
                         headline=row.headline, source=row.source, vector=dict(row.vector), fingerprint=fp)


def assignment_from_record(row: StoryArticleRecord, label: str = "") -> Assignment:
    """The assignment an article got, read back (a re-run after a crash gets the same answer)."""
    return Assignment(article_id=row.article_id, story_id=row.story_id, is_new_story=row.is_new_story,
                      similarity=row.similarity, near_dup_of=row.near_dup_of,
                      duplicated_by=row.duplicated_by, exact_duplicate=row.exact_duplicate,
                      new_outlet=row.new_outlet, label_changed=row.label_changed, label=label)


# --- story numbers ----------------------------------------------------------------------------------

STORY_NUMBER_BLOCK = 32  # numbers reserved at a time: a new story costs 1/32 of a transaction


class StoryNumbers:
    """Story numbers reserved from the store in blocks. Unique across processes (each block is
    the caller's alone); numbers left unused at exit are skipped, so ids may have gaps."""

    def __init__(self, rows: StoryRows, block: int = STORY_NUMBER_BLOCK) -> None:
        self.rows = rows
        self.block = block
        self._free: Iterator[int] = iter(())

    def next(self) -> int:
        number = next(self._free, None)
        if number is None:
            self._free = iter(self.rows.reserve_story_numbers(self.block))
            number = next(self._free)
        return number


# --- the buffered writes of one assignment ----------------------------------------------------------


class _PendingWrites:
    def __init__(self, rows: StoryRows) -> None:
        self.rows = rows
        self.story: Story | None = None
        self.article: StoredArticle | None = None
        self.index_terms: Sequence[str] = ()
        self.document_terms: list[str] | None = None

    def flush(self, assignment: Assignment | None) -> None:
        if self.story is None or self.article is None:
            return
        outlets = len(self.story.outlets)
        self.rows.save(story_to_record(self.story), article_to_record(self.article, assignment, outlets),
                       self.index_terms, self.document_terms or ())
        self.story = self.article = None
        self.document_terms = None


class StoredTermStatistics:
    """Document frequencies in the store; ``prefetch`` reads one article's terms in one query."""

    def __init__(self, rows: StoryRows, pending: _PendingWrites | None = None) -> None:
        self.rows = rows
        self._pending = pending
        self.documents = rows.counter("documents")
        self._cache: dict[str, int] = {}

    def bind(self, pending: _PendingWrites) -> None:
        self._pending = pending

    def prefetch(self, terms: Iterable[str]) -> None:
        wanted = set(terms)
        self._cache = {t: 0 for t in wanted} | self.rows.document_frequencies(wanted)

    def idf(self, term: str) -> float:
        df = self._cache.get(term)
        if df is None:
            df = self._cache[term] = self.rows.document_frequencies([term]).get(term, 0)
        return math.log((self.documents + 1) / (df + 1)) + 1.0

    def add_document(self, terms: Iterable[str]) -> None:
        listed = list(set(terms))
        self.documents += 1
        for term in listed:
            if term in self._cache:
                self._cache[term] += 1
        if self._pending is not None:
            self._pending.document_terms = listed


class StoredStoryIndex:
    """``StoryIndex`` with every read a query: nothing but the current assignment in memory."""

    def __init__(self, rows: StoryRows) -> None:
        self.rows = rows
        self.pending = _PendingWrites(rows)
        self.numbers = StoryNumbers(rows)

    def new_story_id(self) -> str:
        return str(self.numbers.next())

    def story(self, story_id: str) -> Story | None:
        if self.pending.story is not None and self.pending.story.story_id == story_id:
            return self.pending.story
        row = self.rows.story(story_id)
        return story_from_record(row) if row else None

    def save_story(self, story: Story) -> None:
        self.pending.story = story

    def article(self, article_id: str) -> StoredArticle | None:
        row = self.rows.article(article_id)
        return article_from_record(row) if row else None

    def add_article(self, article: StoredArticle, index_terms: Sequence[str]) -> None:
        self.pending.article, self.pending.index_terms = article, tuple(index_terms)

    def candidates(self, terms: Sequence[str], since: datetime, until: datetime,
                   limit: int, busy: int) -> list[str]:
        return self.rows.candidates(terms, since, until, limit, busy)

    def flush(self, assignment: Assignment | None = None) -> None:
        self.pending.flush(assignment)

    def prune(self, before: datetime) -> int:
        return self.rows.prune_postings(before)


class WindowStoryIndex(InMemoryStoryIndex):
    """The window in memory (as ``InMemoryStoryIndex``), every change also written to the store."""

    def __init__(self, rows: StoryRows) -> None:
        super().__init__()
        self.rows = rows
        self.pending = _PendingWrites(rows)
        self.numbers = StoryNumbers(rows)

    def load(self, since: datetime) -> int:
        """Rebuild the window from the store: articles with event time ≥ ``since`` and their stories."""
        stories = self.rows.window_stories(since)
        for row in stories:
            super().save_story(story_from_record(row))
        loaded = 0
        for record, terms in self.rows.window_articles(since):
            if super().story(record.story_id) is None:
                story = self.rows.story(record.story_id)
                if story is not None:
                    super().save_story(story_from_record(story))
            super().add_article(article_from_record(record), terms)
            loaded += 1
        return loaded

    def new_story_id(self) -> str:
        return str(self.numbers.next())

    def save_story(self, story: Story) -> None:
        super().save_story(story)
        self.pending.story = story

    def add_article(self, article: StoredArticle, index_terms: Sequence[str]) -> None:
        super().add_article(article, index_terms)
        self.pending.article, self.pending.index_terms = article, tuple(index_terms)

    def flush(self, assignment: Assignment | None = None) -> None:
        self.pending.flush(assignment)

    def prune(self, before: datetime) -> int:
        """Forget (and drop the stored postings of) articles older than ``before``."""
        self.rows.prune_postings(before)
        return super().prune(before)


def window_start(now: datetime, window: timedelta) -> datetime:
    """How far back the in-memory window reaches: two windows (an article may be dated a window back)."""
    return now - 2 * window
