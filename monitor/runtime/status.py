"""The daemon's health, read from its database (``newsmon status``, ``/healthz``).

Unhealthy, for monitoring scripts (``newsmon status`` exits 1), when any of:

- **stale**: no poll cycle finished within 3x the shortest enabled feed
  interval (or none ever did). A running daemon closes a cycle each time every
  feed has been polled once, or each shortest interval when some poll finished;
  ``newsmon once`` closes one per run. So a daemon that is down, wedged or
  crash-looping turns stale;
- **dead alerts**: alerts that exhausted their delivery attempts
  (``newsmon db retry-dead`` puts them back in the outbox);
- **all feeds failing**: every enabled feed's last poll failed.

Failing feeds (some, not all), pending alerts and the database size are
reported without making the state unhealthy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from monitor.config import Config
from monitor.ingest.cadence import tick_interval
from monitor.storage.store import Store, parse_iso, utcnow

STALE_FACTOR = 3


@dataclass
class FailingFeed:
    feed: str
    kind: str | None
    error: str | None
    failures: int
    since: str | None


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


def evaluate(store: Store, config: Config, *, now: datetime | None = None) -> HealthReport:
    """Read the database and decide healthy or not (see the module doc)."""
    now = now or utcnow()
    report = HealthReport(healthy=True, checked_at=now.isoformat(timespec="seconds"),
                          database=str(store.path))
    report.database_bytes = store.database_bytes()
    report.schema_version = store.schema_version()
    feeds = store.feed_health()
    report.feeds = len(feeds)
    for row in feeds:
        if row["consecutive_failures"]:
            report.failing_feeds.append(FailingFeed(
                feed=row["name"] or row["url"], kind=row["last_error_kind"],
                error=(row["last_error"] or "")[:200] or None,
                failures=row["consecutive_failures"], since=row["failing_since"]))
    report.alerts = store.alert_counts()
    report.daemon = {k: store.get_meta(f"daemon_{k}") for k in ("started_at", "pid", "stopped_at")}

    report.stale_after_seconds = stale_after(config)
    cycle = store.last_cycle()
    report.last_cycle = cycle
    finished = parse_iso(cycle["finished_at"]) if cycle else None
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
            f"{dead} dead alert(s): delivery gave up (`newsmon db retry-dead` re-queues them)")
    if feeds and len(report.failing_feeds) == len(feeds):
        report.problems.append(f"all {len(feeds)} feeds are failing")
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
    return "\n".join(lines)
