"""The daemon's health, read from its database (``newsmon status``, ``/healthz``).

Unhealthy, for monitoring scripts (``newsmon status`` exits 1), when any of:

- **stale**: no poll cycle finished within 3x the shortest enabled feed
  interval (or none ever did). A running daemon closes a cycle each time every
  feed has been polled once, or each shortest interval when some poll finished;
  ``newsmon once`` closes one per run. So a daemon that is down, wedged or
  crash-looping turns stale;
- **dead alerts**: alerts that exhausted their delivery attempts
  (``newsmon alerts retry --dead`` puts them back in the outbox);
- **all feeds failing**: every enabled feed's last poll failed;
- **a channel failing**: a channel has failed every send for longer than
  ``delivery.channel_failing_after`` (its cause is shown).
- **daemon problem**: what the running daemon wrote for itself: item
  processing stopped (workers failing), storage errors repeating;
- **storage**: the last cycle had no feed ok and failed on the database.

Failing feeds (some, not all), pending alerts, each channel's delivery state,
topics that route to no channel, and the database size are reported without
making the state unhealthy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from monitor.config import Config
from monitor.ingest.cadence import tick_interval
from monitor.logs import public_url
from monitor.records import ChannelHealthRow, CycleRecord, StatusFigures, iso, utcnow

STALE_FACTOR = 3


@dataclass
class FailingFeed:
    feed: str
    kind: str | None
    error: str | None
    failures: int
    since: str | None


@dataclass
class ChannelHealth:
    channel: str
    state: str  # ok, failing (some failures), down (failing longer than the window), idle
    last_success: str | None
    last_failure: str | None
    last_error: str | None
    consecutive_failures: int
    failing_since: str | None
    pending: int
    dead: int
    sending: int  # rows claimed by a delivery run now


@dataclass
class HealthReport:
    healthy: bool
    problems: list[str] = field(default_factory=list)
    checked_at: str = ""
    database: str = ""
    database_bytes: int = 0
    schema_version: int = 0
    last_cycle: dict[str, Any] | None = None
    last_cycle_age_seconds: float | None = None
    stale_after_seconds: float | None = None
    feeds: int = 0
    failing_feeds: list[FailingFeed] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)
    daemon: dict[str, str | None] = field(default_factory=dict)
    channels: list[ChannelHealth] = field(default_factory=list)
    unrouted_topics: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def stale_after(config: Config) -> float | None:
    """3x the longest a daemon cycle can take; None with no feed to poll.

    A cycle closes after the shortest feed interval once a poll has happened,
    and feed jobs tick at their floors: so a cycle takes at most the larger of
    the shortest interval and the shortest tick.
    """
    feeds = [f for f in config.feeds if f.enabled]
    if not feeds:
        return None
    shortest_interval = min(config.feed_interval(f) for f in feeds)
    shortest_tick = min(tick_interval(f, config.fetch) for f in feeds)
    return STALE_FACTOR * max(shortest_interval, shortest_tick)


def _cycle_dict(cycle: CycleRecord) -> dict[str, Any]:
    """The cycle as ``status --json`` shows it (timestamps as stored)."""
    return {"id": cycle.id, "started_at": iso(cycle.started_at),
            "finished_at": iso(cycle.finished_at), "feeds_ok": cycle.feeds_ok,
            "feeds_failed": cycle.feeds_failed, "items_new": cycle.items_new,
            "matches": cycle.matches, "alerts": cycle.alerts, "error": cycle.error}


def channel_health(rows: Sequence[ChannelHealthRow], config: Config,
                   now: datetime) -> list[ChannelHealth]:
    """Each channel's state; ``down`` once it has failed longer than the window."""
    window = config.delivery.channel_failing_after
    out = []
    for row in rows:
        if row.consecutive_failures and row.failing_since is not None:
            down = (now - row.failing_since).total_seconds() > window
            state = "down" if down else "failing"
        else:
            state = "ok" if row.last_success_at is not None else "idle"
        out.append(ChannelHealth(
            channel=row.channel, state=state, last_success=iso(row.last_success_at),
            last_failure=iso(row.last_failure_at), last_error=row.last_error,
            consecutive_failures=row.consecutive_failures, failing_since=iso(row.failing_since),
            pending=row.pending, dead=row.dead, sending=row.claimed))
    return out


def evaluate(figures: StatusFigures, config: Config, *,
             now: datetime | None = None, channels: Sequence[ChannelHealthRow] = (),
             unrouted: Sequence[str] = ()) -> HealthReport:
    """Decide healthy or not from the database's figures (see the module doc).

    ``figures`` come from ``Storage.views.status_figures()`` (a ``ports.StatusReader``),
    ``channels`` from ``Storage.outbox.channel_health()``; ``unrouted`` are the topics
    the daemon found no channel for.
    """
    now = now or utcnow()
    report = HealthReport(healthy=True, checked_at=now.isoformat(timespec="seconds"),
                          database=figures.database)
    report.database_bytes = figures.database_bytes
    report.schema_version = figures.schema_version
    feeds = figures.feeds
    report.feeds = len(feeds)
    for row in feeds:
        if row.consecutive_failures:
            report.failing_feeds.append(FailingFeed(
                feed=row.name or public_url(row.url), kind=row.last_error_kind,
                error=(row.last_error or "")[:200] or None,
                failures=row.consecutive_failures, since=iso(row.failing_since)))
    report.alerts = dict(figures.alert_counts)
    report.daemon = dict(figures.daemon)

    report.stale_after_seconds = stale_after(config)
    cycle = figures.last_cycle
    report.last_cycle = _cycle_dict(cycle) if cycle else None
    finished = cycle.finished_at if cycle else None
    age = (now - finished).total_seconds() if finished is not None else None
    if age is not None:
        report.last_cycle_age_seconds = round(age, 1)
    if report.stale_after_seconds is not None:
        if age is None:
            report.problems.append("no poll cycle has finished yet")
        elif age > report.stale_after_seconds:
            report.problems.append(
                f"stale: the last cycle finished {report.last_cycle_age_seconds:.0f}s ago"
                f" (limit {report.stale_after_seconds:.0f}s, 3x the shortest interval)")
    dead = report.alerts.get("dead", 0)
    if dead:
        report.problems.append(
            f"{dead} dead alert(s): delivery gave up (`newsmon alerts retry --dead` re-queues them)")
    if feeds and len(report.failing_feeds) == len(feeds):
        report.problems.append(f"all {len(feeds)} feeds are failing")
    report.channels = channel_health(channels, config, now)
    for channel in report.channels:
        if channel.state == "down":
            report.problems.append(
                f"channel {channel.channel} has failed every send since {channel.failing_since}"
                f" ({channel.consecutive_failures} in a row, {channel.pending} pending):"
                f" {(channel.last_error or 'unknown cause')[:200]}")
    report.unrouted_topics = list(unrouted)
    daemon_problem = report.daemon.get("problem")
    if daemon_problem and not report.daemon.get("stopped_at"):
        # What the running daemon saw (stalled processing, repeated storage errors).
        report.problems.append(f"daemon: {daemon_problem}")
    if cycle is not None and cycle.error and cycle.error.startswith("database") and not cycle.feeds_ok:
        report.problems.append(f"storage: the last cycle failed on the database ({cycle.error[:200]})")
    report.healthy = not report.problems
    return report


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def render_text(report: HealthReport) -> str:
    """The human-readable status, one fact a line."""
    lines = [f"newsmon: {'healthy' if report.healthy else 'UNHEALTHY'}"]
    lines.extend(f"  problem: {p}" for p in report.problems)
    lines.append(f"database: {report.database} ({_size(report.database_bytes)},"
                 f" schema v{report.schema_version})")
    if report.daemon.get("started_at"):
        stopped = report.daemon.get("stopped_at")
        state = f"stopped {stopped}" if stopped else "running"
        lines.append(f"daemon: pid {report.daemon.get('pid')}, started"
                     f" {report.daemon['started_at']}, {state}")
    if report.daemon.get("storage"):
        lines.append(f"storage: {report.daemon['storage']}")
    cycle = report.last_cycle
    if cycle:
        lines.append(
            f"last cycle: finished {cycle['finished_at']} ({report.last_cycle_age_seconds:.0f}s"
            f" ago): {cycle['feeds_ok'] or 0} feeds ok, {cycle['feeds_failed'] or 0} failed,"
            f" {cycle['items_new'] or 0} new items, {cycle['matches'] or 0} matches,"
            f" {cycle['alerts'] or 0} alerts" + (f"; error: {cycle['error']}" if cycle["error"] else ""))
    else:
        lines.append("last cycle: none")
    lines.append(f"feeds: {report.feeds} enabled, {len(report.failing_feeds)} failing")
    for feed in report.failing_feeds:
        lines.append(f"  failing: {feed.feed}: {feed.kind} x{feed.failures} since {feed.since}:"
                     f" {feed.error or ''}")
    counts = report.alerts
    lines.append(f"alerts: {counts.get('pending', 0)} pending, {counts.get('sent', 0)} sent,"
                 f" {counts.get('dead', 0)} dead")
    if report.channels:
        lines.append("channels:")
        lines.extend(_channel_table(report.channels))
    for topic in report.unrouted_topics:
        lines.append(f"  unrouted: topic {topic} routes to no channel (matches stored, not alerted)")
    return "\n".join(lines)


def _channel_table(channels: Sequence[ChannelHealth]) -> list[str]:
    """One aligned row per channel: state, counts, last success and failure, cause."""
    header = ("channel", "state", "pending", "dead", "failures", "last success", "last failure")
    rows = [(c.channel, c.state, str(c.pending), str(c.dead), str(c.consecutive_failures),
             c.last_success or "-", c.last_failure or "-") for c in channels]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for channel, row in zip(channels, rows, strict=True):
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if channel.state in ("failing", "down") and channel.last_error:
            lines.append(f"    cause: {channel.last_error[:200]}")
    return lines
