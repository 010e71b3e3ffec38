"""When a channel's alerts may go out: digests, quiet hours, throttling.

Pure functions of the channel's settings, the alerts and an explicit ``now``
(tests pass a controlled clock). The delivery job (``monitor.delivery.deliverer``) asks
``plan_channel`` what to do with a channel's due alerts and carries it out.

The clock-time parts (``daily at 08:00``, ``22:00-07:00``) are read in the
channel's IANA time zone, so a digest stays at 08:00 across DST changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from monitor.config import SEVERITY_RANK, ChannelConfig, DeliverySettings
from monitor.models import PendingAlert

# Why an alert waits; an alert that waited for any of these goes out in a digest.
HELD_DIGEST = "digest"  # the channel sends hourly or daily digests
HELD_QUIET = "quiet"  # quiet hours
HELD_THROTTLE = "throttle"  # more than ``throttle`` alerts in the window


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """``immediate``, ``hourly`` or ``daily at HH:MM``."""

    kind: str  # immediate | hourly | daily
    at: time | None = None  # daily only

    @classmethod
    def parse(cls, spec: str) -> DigestSchedule:
        spec = " ".join(spec.lower().split())
        if spec in ("immediate", "hourly"):
            return cls(spec)
        m = re.fullmatch(r"daily at (\d{1,2}):(\d{2})", spec)
        if not m:
            raise ValueError(f"bad digest schedule {spec!r}")
        return cls("daily", time(int(m.group(1)), int(m.group(2))))

    def next_after(self, moment: datetime, tz: ZoneInfo) -> datetime | None:
        """The first digest time strictly after ``moment`` (None: immediate)."""
        if self.kind == "immediate":
            return None
        if self.kind == "hourly":
            # Hours are counted in UTC: a DST change must not make one 2 h long.
            utc = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            return utc + timedelta(hours=1)
        assert self.at is not None
        local = moment.astimezone(tz)
        candidate = _local(local.date(), self.at, tz)
        if candidate <= moment:
            candidate = _local(local.date() + timedelta(days=1), self.at, tz)
        return candidate


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily clock-time range, possibly across midnight (22:00-07:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, spec: str) -> QuietHours:
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", spec)
        if not m:
            raise ValueError(f"bad quiet hours {spec!r}")
        return cls(time(int(m.group(1)), int(m.group(2))), time(int(m.group(3)), int(m.group(4))))

    def end_if_quiet(self, moment: datetime, tz: ZoneInfo) -> datetime | None:
        """When the quiet period around ``moment`` ends, or None when it is not quiet."""
        local = moment.astimezone(tz)
        clock = local.time().replace(tzinfo=None)
        day = local.date()
        if self.start < self.end:  # same day: 12:00-14:00
            if self.start <= clock < self.end:
                return _local(day, self.end, tz)
            return None
        # Across midnight: 22:00-07:00 is quiet from 22:00 today, or until 07:00 today.
        if clock >= self.start:
            return _local(day + timedelta(days=1), self.end, tz)
        if clock < self.end:
            return _local(day, self.end, tz)
        return None


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at clock time ``at`` in ``tz``, as an aware UTC datetime.

    A clock time that does not exist (skipped by a DST change) resolves to
    the hour after, one that exists twice to the first: fold=0 does both.
    """
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Due:
    """A due outbox row and why it waited before (None: never held)."""

    alert: PendingAlert
    held: str | None = None


@dataclass
class ChannelPlan:
    """What to do with one channel's due alerts now."""

    single: list[PendingAlert] = field(default_factory=list)  # one message each
    digest: list[PendingAlert] = field(default_factory=list)  # one digest (maybe in parts)
    # alert id -> (send no earlier than, why): these are not sent now.
    hold: dict[int, tuple[datetime, str]] = field(default_factory=dict)


def throttle_limit(channel: ChannelConfig, settings: DeliverySettings) -> tuple[int | None, float]:
    """The channel's throttle (count, window); admin channels get a default one."""
    if channel.throttle is not None:
        return channel.throttle, channel.throttle_window
    if channel.admin:
        return settings.admin_throttle, settings.admin_window
    return None, channel.throttle_window


def plan_channel(
    channel: ChannelConfig, due: Sequence[Due], *, now: datetime, settings: DeliverySettings,
    sent_in_window: Sequence[datetime] = (),
) -> ChannelPlan:
    """Decide, for one channel, which due alerts go now, how, and which wait.

    ``due`` is oldest first. ``sent_in_window`` are the times of the single
    messages sent to the channel within its throttle window (digests do not
    count: they are the throttle's way out).

    Order of the rules: quiet hours hold everything below ``quiet_bypass``;
    a digest schedule holds alerts until the next digest time after each was
    queued; alerts that were held go out together as one digest; the throttle
    lets at most N single messages through per window and holds the rest until
    the window ends; a backlog larger than ``collapse_over`` becomes a digest.
    """
    tz = ZoneInfo(channel.timezone)
    plan = ChannelPlan()
    quiet_end = (QuietHours.parse(channel.quiet_hours).end_if_quiet(now, tz)
                 if channel.quiet_hours else None)
    bypass_rank = SEVERITY_RANK[channel.quiet_bypass] if channel.quiet_bypass else 99
    schedule = DigestSchedule.parse(channel.digest)
    candidates: list[Due] = []
    for entry in due:
        alert = entry.alert
        urgent = SEVERITY_RANK.get(alert.severity, 1) >= bypass_rank
        if quiet_end is not None and not urgent:
            plan.hold[alert.id] = (quiet_end, HELD_QUIET)
            continue
        release = schedule.next_after(alert.created_at, tz)
        if release is not None and release > now:
            plan.hold[alert.id] = (release, HELD_DIGEST)
            continue
        if release is not None:
            plan.digest.append(alert)  # its digest time has come
            continue
        candidates.append(entry)

    # Alerts that waited (quiet hours, throttle) go out together as one digest.
    fresh = [e.alert for e in candidates if e.held is None]
    plan.digest.extend(e.alert for e in candidates if e.held is not None)

    limit, window = throttle_limit(channel, settings)
    if limit is not None:
        recent = sorted(t for t in sent_in_window if t > now - timedelta(seconds=window))
        room = max(limit - len(recent), 0)
        if len(fresh) > room:
            # The window ends when its oldest message leaves it (or now + window).
            window_end = (recent[0] if recent else now) + timedelta(seconds=window)
            for alert in fresh[room:]:
                plan.hold[alert.id] = (window_end, HELD_THROTTLE)
            fresh = fresh[:room]
    if len(fresh) + len(plan.digest) > settings.collapse_over:
        plan.digest.extend(fresh)  # a backlog: one digest, not a storm
    else:
        plan.single.extend(fresh)
    plan.digest.sort(key=lambda a: a.id)
    return plan
