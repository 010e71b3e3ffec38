"""What each client needs of storage, as narrow Protocols (base layer).

The stages and the runtime type against these, never against
``monitor.storage``: the SQLite repositories satisfy them
(``tests/test_storage_protocols.py``), and another backend can too without
touching the stages. One Protocol per client need:

    FeedStates, ItemStore, NoticeQueue, CycleLog  the pipeline
    PipelineStorage                               the pipeline's whole view
    Outbox                                        delivery (``Deliverer``)
    StatusReader                                  ``newsmon status``, ``/healthz``
    Maintenance                                   retention and optimisation
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from monitor.identity import ItemPlanner
from monitor.models import FeedItem, PendingAlert, ProcessedArticle
from monitor.records import (
    ChannelHealthRow,
    ChannelState,
    ClaimedAlert,
    FeedRecord,
    RecordResult,
    StatusFigures,
)


@runtime_checkable
class FeedStates(Protocol):
    """A feed's stored poll state, and recording each poll's outcome."""

    def get(self, url: str) -> FeedRecord: ...

    def record_poll_success(
        self, feed_id: int, *, etag: str | None, last_modified: str | None,
        body_hash: str | None, new_items: int, next_poll_at: datetime | None = None,
        interval: float | None = None, reason: str | None = None,
        items_per_day: float | None = None, last_new_at: datetime | None = None,
        churn_streak: int | None = None, ttl_minutes: int | None = None,
    ) -> None: ...

    def record_poll_failure(
        self, feed_id: int, *, kind: str, message: str, next_poll_at: datetime | None = None,
        counted: bool = True, interval: float | None = None, reason: str | None = None,
    ) -> None: ...

    def set_health(self, feed_id: int, state: str, since: datetime) -> None: ...

    def set_alerts_held(self, feed_id: int, since: datetime | None) -> None: ...


@runtime_checkable
class ItemStore(Protocol):
    """Which items are new, and the one-transaction item write."""

    def unseen(self, feed_id: int, items: Sequence[FeedItem]) -> list[FeedItem]: ...

    def known_article(self, article_key: str) -> int | None: ...

    def record_item(self, feed_id: int, source: str, processed: ProcessedArticle, *,
                    article_key: str, plan: ItemPlanner) -> RecordResult: ...

    def item_rate(self, feed_id: int, now: datetime, window_days: float = 14.0) -> float: ...


@runtime_checkable
class NoticeQueue(Protocol):
    """Queueing a daemon-health notice, once per event key."""

    def enqueue_notice(self, key: str, title: str, body: str, channels: Sequence[str],
                       *, severity: str = "high") -> list[int]: ...


@runtime_checkable
class CycleLog(Protocol):
    """Recording poll cycles."""

    def start_cycle(self) -> int: ...

    def finish_cycle(self, cycle_id: int, *, feeds_ok: int, feeds_failed: int, items_new: int,
                     matches: int, alerts: int, error: str | None = None) -> None: ...

    def record_cycle(self, started: datetime, *, feeds_ok: int, feeds_failed: int,
                     items_new: int, matches: int, alerts: int, error: str | None = None) -> int: ...


@runtime_checkable
class PipelineStorage(Protocol):
    """Everything one poll of one feed reads and writes (read-only attributes)."""

    @property
    def feeds(self) -> FeedStates: ...

    @property
    def items(self) -> ItemStore: ...

    @property
    def outbox(self) -> NoticeQueue: ...

    @property
    def ops(self) -> CycleLog: ...


@runtime_checkable
class Outbox(NoticeQueue, Protocol):
    """What delivery reads and writes: due alerts, channel backoff, sent messages."""

    def due_channels(self, *, now: datetime | None = None) -> list[str]: ...

    def due_outbox(self, channel: str, *, now: datetime | None = None,
                   limit: int = 1000) -> list[tuple[PendingAlert, str | None]]: ...

    def channel_state(self, channel: str) -> ChannelState: ...

    def hold_alerts(self, holds: dict[int, tuple[datetime, str]]) -> None: ...

    def mark_delivered(self, channel: str, alert_ids: Sequence[int], *, kind: str,
                       now: datetime | None = None) -> int: ...

    def mark_attempt_failed(self, channel: str, alert_ids: Sequence[int], *, error: str,
                            retry_at: datetime, dead_ids: Sequence[int] = (),
                            now: datetime | None = None) -> None: ...

    def recent_messages(self, channel: str, since: datetime, *,
                        kinds: Sequence[str] = ("alert",)) -> list[datetime]: ...

    # Claims: one delivery run at a time per row (several processes on one database).
    def claim_due(self, channel: str, owner: str, *, lease_until: datetime,
                  now: datetime | None = None, limit: int = 1000,
                  owner_gone: Callable[[str], bool] = ...,
                  ) -> list[ClaimedAlert] | None: ...

    def begin_send(self, alert_ids: Sequence[int], owner: str, *, lease_until: datetime,
                   now: datetime | None = None) -> bool: ...

    def release_claims(self, owner: str, alert_ids: Sequence[int] | None = None) -> int: ...

    def set_failing_notified(self, channel: str, notified: bool = True) -> None: ...

    def channel_health(self) -> list[ChannelHealthRow]: ...


@runtime_checkable
class StatusReader(Protocol):
    """The figures the health verdict is made from."""

    def status_figures(self) -> StatusFigures: ...


@runtime_checkable
class Maintenance(Protocol):
    """Retention and upkeep of the database."""

    def prune_bodies(self, before: datetime) -> int: ...

    def prune_cycles(self, before: datetime) -> int: ...

    def free_fraction(self) -> float: ...

    def optimize(self, *, vacuum: bool = False) -> None: ...
