"""Feed health: is a feed failing for too long, or quiet compared with its usual rate?

A pure function of the feed's stored row and ``now``. It returns the health
state the feed should be in and, only when that state *changes*, the notice
to queue on the admin channels: one when a problem starts, one when the feed
recovers, never one per poll. The notice keys name the episode (the feed and
when the problem started), and ``Store.enqueue_notice`` de-duplicates by key,
so a crash between the notice and the state write cannot double a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.config import FetchSettings
from monitor.ingest.cadence import DAY
from monitor.storage.store import iso, parse_iso

OK, FAILING, QUIET = "ok", "failing", "quiet"


@dataclass(frozen=True, slots=True)
class Notice:
    key: str
    title: str
    body: str
    severity: str = "high"


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


def _label(row: dict[str, Any]) -> str:
    return str(row.get("name") or row.get("url") or f"feed {row.get('id')}")


def evaluate(row: dict[str, Any], now: datetime, settings: FetchSettings) -> HealthChange | None:
    """The feed's new health state and notices, or None when nothing changed.

    ``row`` is the feed's row as stored *after* the poll was recorded.
    """
    current = row.get("health_state") or OK
    since = parse_iso(row.get("health_since"))
    failing_since = parse_iso(row.get("failing_since"))
    failures = int(row.get("consecutive_failures") or 0)
    last_new = parse_iso(row.get("last_new_at"))
    label, feed_id = _label(row), row.get("id")

    wanted = OK
    if (failures > 0 and failing_since is not None
            and (now - failing_since).total_seconds() >= settings.failing_notice_after):
        wanted = FAILING
    elif failures == 0:
        limit = quiet_threshold(row.get("items_per_day"), settings)
        if limit is not None and last_new is not None and (now - last_new).total_seconds() >= limit:
            wanted = QUIET
    elif current != OK:
        wanted = current  # failing but not for long yet: keep what we had (no flapping)
    if wanted == current:
        return None

    notices: list[Notice] = []
    if current == FAILING:
        notices.append(Notice(
            key=f"feed-recovered-{feed_id}-{iso(since)}", severity="normal",
            title=f"Feed recovered: {label}",
            body=f"{row.get('url')} polls successfully again (it had been failing since"
                 f" {iso(since)}).",
        ))
    elif current == QUIET:
        notices.append(Notice(
            key=f"feed-unquiet-{feed_id}-{iso(since)}", severity="normal",
            title=f"Feed active again: {label}",
            body=f"{row.get('url')} brings new items again (quiet since {iso(since)}).",
        ))
    if wanted == FAILING:
        assert failing_since is not None
        hours = (now - failing_since).total_seconds() / 3600
        notices.append(Notice(
            key=f"feed-failing-{feed_id}-{iso(failing_since)}",
            title=f"Feed failing: {label}",
            body=(f"{row.get('url')} has failed every poll for {hours:.1f} h"
                  f" ({failures} in a row). Last error ({row.get('last_error_kind')}):"
                  f" {str(row.get('last_error') or '')[:300]}. newsmon keeps retrying"
                  f" with backoff; next poll {row.get('next_poll_at')}."),
        ))
        return HealthChange(FAILING, failing_since, tuple(notices))
    if wanted == QUIET:
        assert last_new is not None
        days = (now - last_new).total_seconds() / DAY
        notices.append(Notice(
            key=f"feed-quiet-{feed_id}-{iso(last_new)}", severity="normal",
            title=f"Feed quiet: {label}",
            body=(f"{row.get('url')} has brought no new item for {days:.1f} days; it usually"
                  f" brings {float(row.get('items_per_day') or 0):.1f} a day. Polls succeed:"
                  f" the feed may have moved or stopped."),
        ))
        return HealthChange(QUIET, last_new, tuple(notices))
    return HealthChange(OK, now, tuple(notices))

