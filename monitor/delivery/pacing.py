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
from monitor.identity import story_alert_number
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

    single: list[PendingAlert] = field(default_factory=list)  # sent now, as ``messages``
    digest: list[PendingAlert] = field(default_factory=list)  # one digest (maybe in parts)
    # alert id -> (send no earlier than, why): these are not sent now.
    hold: dict[int, tuple[datetime, str]] = field(default_factory=dict)
    # ``single`` as messages: a story's rows of one follow-up together, any other row alone.
    messages: list[list[PendingAlert]] = field(default_factory=list)


def message_key(alert: PendingAlert) -> tuple[str, ...]:
    """What makes rows one message: a story alert's (story, follow-up number, channel); any other
    row is a message of its own. The rows of one article's topics share it (one transaction)."""
    if alert.story_id is not None:
        number = story_alert_number(alert.alert_key, alert.story_id, alert.channel)
        if number is not None:
            return ("story", alert.story_id, str(number), alert.channel)
    return ("row", str(alert.id))


def message_groups(alerts: Sequence[PendingAlert]) -> list[list[PendingAlert]]:
    """``alerts`` gathered into messages (``message_key``), in the order of each one's first row."""
    groups: dict[tuple[str, ...], list[PendingAlert]] = {}
    for alert in alerts:
        groups.setdefault(message_key(alert), []).append(alert)
    return list(groups.values())


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

    The unit is the message (``message_groups``): a story's rows of one follow-up are
    held, sent or put in a digest together, and count as one message.

    Order of the rules: quiet hours hold everything below ``quiet_bypass``;
    a digest schedule holds alerts until the next digest time after each was
    queued; alerts that were held go out together as one digest; the throttle
    lets at most N single messages through per window and holds the rest until
    the window ends; a backlog of more than ``collapse_over`` messages becomes a digest.
    """
    tz = ZoneInfo(channel.timezone)
    plan = ChannelPlan()
    quiet_end = (QuietHours.parse(channel.quiet_hours).end_if_quiet(now, tz)
                 if channel.quiet_hours else None)
    bypass_rank = SEVERITY_RANK[channel.quiet_bypass] if channel.quiet_bypass else 99
    schedule = DigestSchedule.parse(channel.digest)
    held_before = {entry.alert.id: entry.held for entry in due}
    candidates: list[list[PendingAlert]] = []
    digest_units: list[list[PendingAlert]] = []

    def hold(unit: Sequence[PendingAlert], until: datetime, why: str) -> None:
        for alert in unit:
            plan.hold[alert.id] = (until, why)

    for unit in message_groups([entry.alert for entry in due]):
        urgent = any(SEVERITY_RANK.get(a.severity, 1) >= bypass_rank for a in unit)
        if quiet_end is not None and not urgent:
            hold(unit, quiet_end, HELD_QUIET)
            continue
        release = schedule.next_after(min(a.created_at for a in unit), tz)
        if release is not None and release > now:
            hold(unit, release, HELD_DIGEST)
            continue
        if release is not None:
            digest_units.append(unit)  # its digest time has come
            continue
        candidates.append(unit)

    # Alerts that waited (quiet hours, throttle) go out together as one digest.
    fresh = [u for u in candidates if all(held_before[a.id] is None for a in u)]
    digest_units.extend(u for u in candidates if any(held_before[a.id] is not None for a in u))

    limit, window = throttle_limit(channel, settings)
    if limit is not None:
        recent = sorted(t for t in sent_in_window if t > now - timedelta(seconds=window))
        room = max(limit - len(recent), 0)
        if len(fresh) > room:
            # The window ends when its oldest message leaves it (or now + window).
            window_end = (recent[0] if recent else now) + timedelta(seconds=window)
            for unit in fresh[room:]:
                hold(unit, window_end, HELD_THROTTLE)
            fresh = fresh[:room]
    if len(fresh) + len(digest_units) > settings.collapse_over:
        digest_units.extend(fresh)  # a backlog: one digest, not a storm
    else:
        plan.messages.extend(fresh)
        plan.single.extend(a for unit in fresh for a in unit)
    plan.digest = sorted((a for unit in digest_units for a in unit), key=lambda a: a.id)
    return plan
