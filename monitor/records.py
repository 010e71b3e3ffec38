"""Typed rows that cross the storage boundary (base layer: imports no monitor package).

Storage returns these instead of ``dict[str, Any]``, so column names stay in
``monitor/storage`` and policy code (the pipeline, feed health, status, the
CLI) reads attributes a type checker knows. Timestamps are timezone-aware
``datetime`` values; ``iso``/``parse_iso`` are the one text form they are
stored and shown in (seconds, UTC, ``+00:00``), and notice keys use it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.models import PendingAlert


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """The stored text form of a moment: UTC, to the second; None stays None."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(value: str | None) -> datetime | None:
    """The inverse of ``iso`` (a naive value is taken as UTC)."""
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def to_second(moment: datetime) -> datetime:
    """``moment`` as it reads back once stored (UTC, whole seconds)."""
    return parse_iso(iso(moment)) or moment


# --- feeds ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """One feed's stored poll state, schedule and health."""

    id: int
    url: str
    name: str | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    next_poll_at: datetime | None = None
    items_total: int = 0
    items_per_day: float | None = None
    health_state: str = "ok"
    health_since: datetime | None = None
    poll_interval: float | None = None
    poll_reason: str | None = None
    last_new_at: datetime | None = None
    churn_streak: int = 0
    alerts_held_since: datetime | None = None
    ttl_minutes: int | None = None
    created_at: datetime | None = None

    @property
    def label(self) -> str:
        """How notices name the feed: its name, else its URL."""
        return self.name or self.url or f"feed {self.id}"


@dataclass(frozen=True, slots=True)
class FeedHealthRow:
    """An enabled feed's failure state, for ``newsmon status`` and ``/healthz``."""

    id: int
    url: str
    name: str | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    consecutive_failures: int
    last_error_kind: str | None
    last_error: str | None
    failing_since: datetime | None


@dataclass(frozen=True, slots=True)
class FeedTableRow:
    """One configured feed as ``newsmon feeds`` lists it (field order = column order)."""

    name: str
    url: str
    health: str  # ok, failing, quiet, new (never polled), disabled
    last_success: datetime | None
    failures: int
    last_error_kind: str | None
    next_poll: datetime | None
    interval_s: int | None
    reason: str | None
    items_per_day: float | None
    alerts_held_since: datetime | None
    last_error: str | None  # only while failing


# --- items ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What one item write stored."""

    article_id: int
    new_article: bool
    match_ids: tuple[int, ...]
    alert_ids: tuple[int, ...]


# --- outbox ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel's delivery backoff and its last message."""

    failures: int = 0
    blocked_until: datetime | None = None
    last_sent_at: datetime | None = None
    last_error: str | None = None
    failing_since: datetime | None = None  # the first failure of the current run of failures
    last_failure_at: datetime | None = None
    failing_notified: bool = False  # the "channel failing" notice of this run went out


@dataclass(frozen=True, slots=True)
class ChannelHealthRow:
    """One channel's delivery health, for ``newsmon status``, ``/healthz`` and ``/metrics``."""

    channel: str
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None  # the cause of the last failure (secrets masked)
    consecutive_failures: int
    failing_since: datetime | None
    pending: int
    dead: int
    claimed: int  # rows a delivery run holds now (being sent)


@dataclass(frozen=True, slots=True)
class ClaimedAlert:
    """A due alert claimed for sending; ``resent_after`` names the owner whose send of
    it was in flight when that owner stopped (so it may arrive twice)."""

    alert: PendingAlert
    held: str | None
    resent_after: str | None = None


@dataclass(frozen=True, slots=True)
class AlertListRow:
    """One outbox row as ``newsmon alerts`` lists it."""

    id: int
    alert_key: str
    channel: str
    topic: str | None
    severity: str | None
    kind: str | None
    title: str | None
    status: str
    held: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime | None
    sent_at: datetime | None


# --- operations -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """One poll cycle's tally."""

    id: int
    started_at: datetime | None
    finished_at: datetime | None
    feeds_ok: int
    feeds_failed: int
    items_new: int
    matches: int
    alerts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class StatusFigures:
    """Everything ``newsmon status`` judges, read in one go."""

    database: str
    database_bytes: int
    schema_version: int
    feeds: tuple[FeedHealthRow, ...]
    alert_counts: Mapping[str, int]
    daemon: Mapping[str, str | None]  # started_at, pid, stopped_at
    last_cycle: CycleRecord | None


# --- stories --------------------------------------------------------------------------
# Plain values, so storage can keep the story engine's state without importing the stage
# (``monitor.stories.stored`` converts them to and from its own dataclasses).


@dataclass(frozen=True, slots=True)
class StoryRecord:
    """One story as stored: its label, members, outlets and centroid (term → weight)."""

    story_id: str
    label: str
    label_article_id: str
    first_seen: datetime
    last_seen: datetime
    member_ids: tuple[str, ...]
    outlets: tuple[str, ...]
    centroid: Mapping[str, float]
    centroid_norm: float


@dataclass(frozen=True, slots=True)
class StoryArticleRecord:
    """One article's story features and the assignment it got (``article_id`` is its article key)."""

    article_id: str
    story_id: str
    event_time: datetime
    headline: str
    source: str
    vector: Mapping[str, float]
    exact: str  # the fingerprint: exact-text hash, shingle sample (uint64 bytes), word count
    sample: bytes
    words: int
    wire_credit: bool
    is_new_story: bool = False
    similarity: float = 1.0
    near_dup_of: str | None = None
    duplicated_by: str | None = None
    exact_duplicate: bool = False
    new_outlet: bool = True
    label_changed: bool = False
    outlets_after: int = 0  # the story's distinct outlets once this article joined


@dataclass(frozen=True, slots=True)
class StoryAlertRecord:
    """An outbox row of a story (key ``story-<id>-<channel>-<n>-<topic>``), for alert identity."""

    channel: str
    topic: str
    alert_key: str
    outlets: int  # the story's outlets when the alerted article joined
    evidence: tuple[str, ...] = ()  # the evidence sentences the row carried (plain text)
    note: str = ""  # the row's note (``alerts.body``): what changed, a burst


@dataclass(frozen=True, slots=True)
class StoryListRow:
    """One story as ``newsmon stories`` lists it (field order = column order)."""

    story_id: str
    label: str
    size: int
    outlets: int
    topics: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class StoryMemberRow:
    """One article of a story, for ``newsmon stories show``."""

    article_key: str
    event_time: datetime
    source: str
    headline: str
    url: str | None
    topics: tuple[str, ...]
    near_dup_of: str | None
    similarity: float
