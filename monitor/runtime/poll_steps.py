"""The values one poll's steps hand each other (``monitor.runtime.pipeline``).

plan → ``PollPlan``, fetch+parse → ``FetchedFeed``, select → ``Selection``; after
each item's write the after-record hooks get a ``RecordedItem``. A queue engine
(``monitor.cluster``) passes the same values between its tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from monitor.config import FeedConfig
from monitor.ingest.churn import ChurnDecision
from monitor.models import FeedItem, FetchResult, ParsedFeed, ProcessedArticle
from monitor.records import FeedRecord, RecordResult
from monitor.runtime.cycles import PollOutcome

__all__ = ["AfterRecordHook", "FetchedFeed", "PollPlan", "RecordedItem", "Selection"]


@dataclass
class PollPlan:
    """The plan step's answer: poll this feed now, with its stored state."""

    feed: FeedConfig
    record: FeedRecord
    outcome: PollOutcome
    now: datetime


@dataclass(frozen=True, slots=True)
class FetchedFeed:
    """The fetch+parse step's answer; ``parsed`` is None for a 304 or the same body."""

    result: FetchResult
    body_hash: str | None
    parsed: ParsedFeed | None


@dataclass(frozen=True, slots=True)
class Selection:
    """The select step's answer: the items new to this feed, split by what they need."""

    fresh: list[FeedItem]  # new to this feed
    to_process: list[FeedItem]  # articles not stored yet: page, extract, analyse, match
    known: list[FeedItem]  # articles another feed already brought: an item row only
    churn: ChurnDecision


@dataclass(frozen=True, slots=True)
class RecordedItem:
    """What an after-record hook is given: the item as processed, and what was written."""

    feed: FeedConfig
    processed: ProcessedArticle
    result: RecordResult


# Called after each item's transaction commits (search indexing, story assignment,
# metrics...). A hook that raises is logged and never undoes or blocks the write.
AfterRecordHook = Callable[[RecordedItem], None]
