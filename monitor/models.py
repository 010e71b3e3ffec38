"""Plain typed values that flow between the pipeline stages.

fetch → parse → extract → analyse → match → store → alert

Each stage takes and returns these dataclasses (never library objects such as
feedparser dicts or spaCy ``Doc``s), so a stage can be run and tested alone and
values can cross a process boundary (the extract/analyse/match worker pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# The stage errors live in the error tree; re-exported here, where stages import them from.
from monitor.errors import FetchError as FetchError
from monitor.errors import FetchErrorKind as FetchErrorKind
from monitor.errors import StageError as StageError

# --- fetch -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One HTTP response, fully read and decompressed (within the byte cap)."""

    url: str  # the final URL, after redirects
    status: int  # 200, or 304 when ``not_modified``
    content: bytes
    content_type: str  # media type only, lower case ("application/rss+xml")
    headers: dict[str, str]  # lower-cased names; last value wins
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    elapsed: float = 0.0  # seconds


# --- parse -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One entry of a feed, as published (the text is plain, not HTML)."""

    guid: str  # the entry id, or a stable substitute (link or content hash)
    link: str | None  # only a link the feed really published, absolute, http(s)
    canonical_url: str | None  # ``link`` without tracking parameters, for dedup
    title: str
    summary: str  # plain text
    published: datetime | None  # as given by the feed (UTC), may be odd
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    content_hash: str = ""  # hash of title + summary: the fallback dedup key
    language: str | None = None  # the entry's or else the feed's language tag, as written


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A feed document read by ``parse_feed``: its title, format and items."""

    title: str
    version: str  # "rss20", "atom10", "json1", ...
    items: tuple[FeedItem, ...]
    ttl_minutes: int | None = None  # RSS <ttl>
    link: str | None = None
    warnings: tuple[str, ...] = ()  # recoverable problems (encoding overrides...)
    skipped: tuple[tuple[str, str], ...] = ()  # (guid, reason) of items that could not be read


# --- extract -----------------------------------------------------------------

TextSource = Literal["page", "summary"]


@dataclass(frozen=True, slots=True)
class ExtractedPage:
    """What was found on an article page: trafilatura's main text, and the
    title and language from the page head (the feed gives date and authors)."""

    text: str
    title: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ArticleInput:
    """Everything the worker needs to extract, analyse and match one item."""

    item: FeedItem
    feed_url: str
    feed_tags: tuple[str, ...] = ()
    html: bytes | None = None  # the fetched page, or None when it could not be had
    page_error: str | None = None  # why there is no page (stored, shown in alerts)


@dataclass(frozen=True, slots=True)
class Article:
    """The text an item is judged on, after extraction (or the fallback)."""

    title: str
    summary: str
    body: str
    text_source: TextSource
    url: str | None
    feed_url: str = ""
    feed_tags: tuple[str, ...] = ()
    language: str | None = None
    published: datetime | None = None
    author: str | None = None


# --- match -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermHit:
    term: str  # the rule term that fired, as written
    text: str  # the words it matched in the article
    field: str  # title | summary | lede | body
    sentence: int  # index of the sentence in that field
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class EvidenceSentence:
    """One sentence that made a topic fire, shown in the alert."""

    field: str
    text: str  # the sentence, plain text
    marked: str  # the sentence with the matched terms wrapped in ** **
    terms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """One topic that fired on one article, with the evidence for it."""

    topic: str
    score: float
    threshold: float
    severity: str = "normal"  # low | normal | high | critical
    hits: tuple[TermHit, ...] = ()
    evidence: tuple[EvidenceSentence, ...] = ()
    channels: tuple[str, ...] = ()  # the topic's own channel list, if any
    language: str | None = None  # the language whose analyser and rules judged the article
    why: str = ""  # in words: where it was found, what carried it, the learned stage's verdict

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.term for h in self.hits))


@dataclass(frozen=True, slots=True)
class ProcessedArticle:
    """The worker's result for one item: its text and what it matched."""

    item: FeedItem
    article: Article
    matches: tuple[TopicMatch, ...] = ()
    page_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    # The story engine's view of it (``monitor.stories.ArticleFeatures``, built by the worker's
    # story stage; typed loosely because the base layer does not import stages).
    story_features: object | None = None


# --- alert -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """An outbox row, read back for delivery."""

    id: int
    alert_key: str  # stable, shown in the message so duplicates are recognisable
    channel: str
    topic: str
    severity: str
    title: str
    url: str | None
    source: str  # the feed's name or URL
    published: datetime | None
    score: float
    threshold: float
    evidence: tuple[EvidenceSentence, ...]
    terms: tuple[str, ...]
    created_at: datetime
    attempts: int = 0
    kind: str = "match"  # "match", or "notice" for daemon-health messages
    body: str = ""  # a notice's text; a story alert's note (what changed, a burst)
    language: str | None = None  # the article's language tag (None: unknown, or a notice)
    story_id: str | None = None  # the story of a per-story alert (``alerts.story_id``); None: per article
