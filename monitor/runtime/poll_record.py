"""The poll's own record: what a poll's success or failure writes to its feed's row.

On success the validators, the item rate and the next poll; on failure the
failure count and the retry (backoff, or the floor when the network was down);
either way the feed's health, with its notices. The decisions are pure functions
(``ingest/cadence`` for the schedule, ``ingest/feed_health`` for health); this is
the base of ``monitor.runtime.pipeline.Pipeline`` that wires them to storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from monitor.config import Config, FeedConfig
from monitor.delivery.routing import admin_channels
from monitor.ingest.cadence import PollState, Schedule, feed_bounds, next_poll
from monitor.ingest.feed_health import evaluate as evaluate_health
from monitor.models import FeedItem
from monitor.notices import Notice
from monitor.ports import PipelineStorage
from monitor.records import FeedRecord, to_second
from monitor.runtime.cycles import PollOutcome
from monitor.runtime.dbthread import StorageThread
from monitor.runtime.poll_steps import FetchedFeed, PollPlan
from monitor.storage import StoreError

# Logged as the pipeline: these lines are the pipeline's, wherever the code sits.
log = logging.getLogger("monitor.runtime.pipeline")

T = TypeVar("T")


class PollRecorder:
    """Writes a poll's outcome to its feed's row; ``Pipeline`` is one (it sets these)."""

    config: Config
    storage: PipelineStorage
    db: StorageThread  # every storage call goes through this one thread
    wall_clock: Callable[[], datetime]  # for stored times (tests move it)

    async def _db(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """A storage call, on the database thread (never on the event loop)."""
        return await self.db.call(func, *args, **kwargs)

    async def _queue_notice(self, notice: Notice) -> None:
        await self._db(self.storage.outbox.enqueue_notice, notice.key, notice.title, notice.body,
                                           admin_channels(self.config.channels),
                                           severity=notice.severity)

    @staticmethod
    def _poll_state(row: FeedRecord, failures: int | None = None) -> PollState:
        return PollState(
            consecutive_failures=row.consecutive_failures if failures is None else failures,
            items_per_day=row.items_per_day,
            last_new_at=row.last_new_at,
        )

    async def record_success(self, plan: PollPlan, fetched: FetchedFeed, *,
                       ttl_minutes: int | None = None, fresh: Sequence[FeedItem] = (),
                       churn_streak: int | None = None) -> None:
        """Store the validators and the next poll; ``ttl_minutes`` None keeps the stored one."""
        feed, row, outcome, result = plan.feed, plan.record, plan.outcome, fetched.result
        now = self.wall_clock()
        updated = replace(row, consecutive_failures=0, failing_since=None)
        rate = last_new = None
        if fresh:
            newest = max(_effective_date(i, now) for i in fresh)
            stored = row.last_new_at
            last_new = newest if stored is None or newest > stored else stored
            rate = await self._db(self.storage.items.item_rate, row.id, now)
            updated = replace(updated, items_per_day=rate, last_new_at=to_second(last_new))
        ttl = ttl_minutes if ttl_minutes is not None else row.ttl_minutes
        schedule = next_poll(
            outcome="ok", state=self._poll_state(updated), settings=self.config.fetch,
            bounds=feed_bounds(feed, self.config.fetch), now=now, headers=result.headers,
            ttl_minutes=ttl or None,
        )
        self._note_schedule(outcome, schedule)
        await self._db(self.storage.feeds.record_poll_success,
            row.id, etag=result.etag, last_modified=result.last_modified,
            body_hash=fetched.body_hash, new_items=outcome.new_items,
            next_poll_at=schedule.next_poll_at, interval=schedule.interval,
            reason=schedule.reason, items_per_day=rate, last_new_at=last_new,
            churn_streak=churn_streak, ttl_minutes=ttl_minutes)
        await self._check_health(replace(updated, next_poll_at=_stored(schedule.next_poll_at)), now)

    async def record_failure(self, feed: FeedConfig, row: FeedRecord, outcome: PollOutcome,
                       *, counted: bool) -> None:
        """Record a failed poll and schedule the retry (backoff, or the floor when the
        network was down). Never raises: a database error is logged."""
        now = self.wall_clock()
        failures = row.consecutive_failures + (1 if counted else 0)
        outcome.network_down = not counted
        schedule = next_poll(
            outcome="error" if counted else "network", state=self._poll_state(row, failures),
            bounds=feed_bounds(feed, self.config.fetch), settings=self.config.fetch, now=now,
            retry_after=outcome.retry_after,
        )
        self._note_schedule(outcome, schedule)
        try:
            await self._db(self.storage.feeds.record_poll_failure,
                row.id, kind=outcome.error_kind or "error", message=outcome.error or "",
                next_poll_at=schedule.next_poll_at, counted=counted, interval=schedule.interval,
                reason=schedule.reason)
            if counted:
                await self._check_health(replace(
                    row, consecutive_failures=failures,
                    failing_since=row.failing_since or to_second(now),
                    last_error_kind=outcome.error_kind, last_error=outcome.error,
                    next_poll_at=_stored(schedule.next_poll_at)), now)
        except StoreError as exc:
            log.error("feed %s: could not record its failure: %s", feed.label, exc)

    @staticmethod
    def _note_schedule(outcome: PollOutcome, schedule: Schedule) -> None:
        outcome.next_poll_at = schedule.next_poll_at
        outcome.interval = schedule.interval
        outcome.reason = schedule.reason

    async def _check_health(self, row: FeedRecord, now: datetime) -> None:
        """Raise a notice when the feed starts failing or goes quiet, and on recovery."""
        change = evaluate_health(row, now, self.config.fetch)
        if change is None:
            return
        for notice in change.notices:
            await self._queue_notice(notice)
            log.warning("feed %s: %s", row.name or row.url, notice.title)
        await self._db(self.storage.feeds.set_health, row.id, change.state, change.since)


def _stored(moment: datetime | None) -> datetime | None:
    """A moment as it reads back from storage (to the second)."""
    return to_second(moment) if moment is not None else None


def _effective_date(item: FeedItem, now: datetime) -> datetime:
    """An item's date for rates and silence: published, but never after ``now``."""
    return min(item.published, now) if item.published else now
