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


# The kinds of fetch failure, stored as a feed's ``last_error_kind``.
FetchErrorKind = Literal[
    "timeout",  # the total deadline passed
    "too_large",  # the byte cap was reached (after decompression)
    "blocked",  # the egress policy refused the address, port or scheme
    "redirects",  # too many redirects, or a refused redirect target
    "http_status",  # 4xx/5xx (429 and 503 carry ``retry_after``)
    "connection",  # refused, reset, DNS failure, truncated body
    "tls",  # certificate or handshake failure (never retried insecurely)
    "bad_encoding",  # an unsupported Content-Encoding, or a corrupt stream
    "not_a_feed",  # a 200 that is not a feed (HTML page, junk, empty)
    "bad_content_type",  # an article URL that is a PDF, image, video...
]


class StageError(Exception):
    """A failure with a kind that is recorded per feed or per item.

    Messages never contain secrets, and name the URL they concern.
    """

    kind: str = "error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class FetchError(StageError):
    kind = "connection"

    def __init__(
        self,
        message: str,
        *,
        kind: FetchErrorKind | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, kind=kind)
        self.status = status
        self.retry_after = retry_after  # seconds, already parsed from Retry-After


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


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str
    version: str  # "rss20", "atom10", "json1", ...
    items: tuple[FeedItem, ...]
    ttl_minutes: int | None = None  # RSS <ttl>
    link: str | None = None
    warnings: tuple[str, ...] = ()  # recoverable problems (encoding overrides...)


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
    body: str = ""  # a notice's text (matches are formatted from their fields)
