"""Feed health: is a feed failing for too long, or quiet compared with its usual rate?

A pure function of the feed's stored row and ``now``. It returns the health
state the feed should be in and, only when that state *changes*, the notice
to queue on the admin channels: one when a problem starts, one when the feed
recovers, never one per poll. The notice keys name the episode (the feed and
when the problem started), and the outbox's ``enqueue_notice`` de-duplicates by key,
so a crash between the notice and the state write cannot double a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor import notices as texts
from monitor.config import FetchSettings
from monitor.ingest.cadence import DAY
from monitor.notices import Notice
from monitor.records import FeedRecord, iso

OK, FAILING, QUIET = "ok", "failing", "quiet"


@dataclass(frozen=True, slots=True)
class HealthChange:
    state: str
    since: datetime
    notices: tuple[Notice, ...] = ()


def quiet_threshold(items_per_day: float | None, settings: FetchSettings) -> float | None:
    """Seconds of silence after which a feed with this normal rate counts as quiet.

    None when the feed has no usable rate (new, or never brings items): a
    feed cannot be judged quiet without a normal to compare with.
    """
    if not items_per_day or items_per_day <= 0:
        return None
    return max(settings.quiet_min, settings.quiet_factor * DAY / items_per_day)


def evaluate(row: FeedRecord, now: datetime, settings: FetchSettings) -> HealthChange | None:
    """The feed's new health state and notices, or None when nothing changed.

    ``row`` is the feed's record as stored *after* the poll was recorded.
    """
    current = row.health_state or OK
    since = row.health_since
    failing_since = row.failing_since
    failures = row.consecutive_failures
    last_new = row.last_new_at
    label, feed_id = row.label, row.id

    wanted = OK
    if (failures > 0 and failing_since is not None
            and (now - failing_since).total_seconds() >= settings.failing_notice_after):
        wanted = FAILING
    elif failures == 0:
        limit = quiet_threshold(row.items_per_day, settings)
        if limit is not None and last_new is not None and (now - last_new).total_seconds() >= limit:
            wanted = QUIET
    elif current != OK:
        wanted = current  # failing but not for long yet: keep what we had (no flapping)
    if wanted == current:
        return None

    notices: list[Notice] = []
    if current == FAILING:
        notices.append(texts.feed_recovered(feed_id, label, row.url, since=since))
    elif current == QUIET:
        notices.append(texts.feed_active_again(feed_id, label, row.url, since=since))
    if wanted == FAILING:
        assert failing_since is not None
        notices.append(texts.feed_failing(
            feed_id, label, row.url, failing_since=failing_since, now=now, failures=failures,
            error_kind=row.last_error_kind, error=row.last_error,
            next_poll_at=iso(row.next_poll_at)))
        return HealthChange(FAILING, failing_since, tuple(notices))
    if wanted == QUIET:
        assert last_new is not None
        notices.append(texts.feed_quiet(feed_id, label, row.url, last_new=last_new, now=now,
                                        items_per_day=float(row.items_per_day or 0)))
        return HealthChange(QUIET, last_new, tuple(notices))
    return HealthChange(OK, now, tuple(notices))
