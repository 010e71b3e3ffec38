"""Every admin notice newsmon raises: its de-duplication key, title, body and severity.

Notices are messages about newsmon itself (a feed failing, alerts held, the
database refusing writes, alerts dead-lettered), queued in the outbox for the
admin channels. The key names the *episode* (which feed, since when), and the
outbox refuses a key it already holds, so a crash between raising a notice
and recording the state change cannot send it twice, and an ongoing problem
is reported once. Pure functions: they take values and return a
:class:`Notice`; the callers decide when, storage only queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "NOTICE_TOPIC",
    "Notice",
    "alerts_dead_lettered",
    "channel_failing",
    "channel_recovered",
    "churn_held",
    "churn_resumed",
    "database_fault",
    "feed_active_again",
    "feed_failing",
    "feed_quiet",
    "feed_recovered",
]

NOTICE_TOPIC = "_newsmon"  # the outbox topic of notices, apart from every rule topic
DEAD_LETTER_IDS_LISTED = 20  # a notice names at most this many dead alerts


@dataclass(frozen=True, slots=True)
class Notice:
    """One admin message: ``key`` de-duplicates it in the outbox."""

    key: str
    title: str
    body: str
    severity: str = "high"


def _iso(moment: datetime | None) -> str | None:
    """The form stored timestamps take, so keys stay the same across versions."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _feed_notice(kind: str, feed_id: int, episode: datetime | None, title: str, body: str,
                 *, severity: str = "high") -> Notice:
    """A notice about one feed, keyed by the feed and the start of the episode."""
    return Notice(key=f"feed-{kind}-{feed_id}-{_iso(episode)}", title=title, body=body,
                  severity=severity)


# --- feed health ---------------------------------------------------------------


def feed_failing(feed_id: int, label: str, url: str, *, failing_since: datetime, now: datetime,
                 failures: int, error_kind: str | None, error: str | None,
                 next_poll_at: str | None) -> Notice:
    hours = (now - failing_since).total_seconds() / 3600
    return _feed_notice(
        "failing", feed_id, failing_since, f"Feed failing: {label}",
        f"{url} has failed every poll for {hours:.1f} h ({failures} in a row)."
        f" Last error ({error_kind}): {str(error or '')[:300]}. newsmon keeps retrying"
        f" with backoff; next poll {next_poll_at}.")


def feed_recovered(feed_id: int, label: str, url: str, *, since: datetime | None) -> Notice:
    return _feed_notice(
        "recovered", feed_id, since, f"Feed recovered: {label}",
        f"{url} polls successfully again (it had been failing since {_iso(since)}).",
        severity="normal")


def feed_quiet(feed_id: int, label: str, url: str, *, last_new: datetime, now: datetime,
               items_per_day: float) -> Notice:
    days = (now - last_new).total_seconds() / 86400
    return _feed_notice(
        "quiet", feed_id, last_new, f"Feed quiet: {label}",
        f"{url} has brought no new item for {days:.1f} days; it usually brings"
        f" {items_per_day:.1f} a day. Polls succeed: the feed may have moved or stopped.",
        severity="normal")


def feed_active_again(feed_id: int, label: str, url: str, *, since: datetime | None) -> Notice:
    return _feed_notice(
        "unquiet", feed_id, since, f"Feed active again: {label}",
        f"{url} brings new items again (quiet since {_iso(since)}).", severity="normal")


# --- GUID churn -----------------------------------------------------------------


def churn_held(feed_id: int, label: str, url: str, *, now: datetime, ratio: float,
               streak: int) -> Notice:
    return _feed_notice(
        "churn", feed_id, now, f"Feed alerts held: {label}",
        f"{url}: more than {ratio:.0%} of its items were new on {streak} polls in a row"
        " (GUID churn?). Its matches are stored but not alerted until a poll brings"
        " mostly known items again.")


def churn_resumed(feed_id: int, label: str, url: str, *, held_since: datetime) -> Notice:
    return _feed_notice(
        "unchurn", feed_id, held_since, f"Feed alerts resumed: {label}",
        f"{url} brings mostly known items again; its alerts are sent again.", severity="normal")


# --- the daemon and delivery ----------------------------------------------------------


def database_fault(error: str, *, now: datetime) -> Notice:
    """One notice an hour at most while the database refuses writes."""
    return Notice(
        key=f"database-{now:%Y-%m-%dT%H}", title="database error",
        body=(f"newsmon could not write its database: {error}\n"
              "The poll was rolled back and will be retried; nothing was marked seen."),
    )


def alerts_dead_lettered(channel: str, alert_keys: Sequence[str], *, first_id: int,
                         error: str) -> Notice:
    listed = ", ".join(alert_keys[:DEAD_LETTER_IDS_LISTED])
    if len(alert_keys) > DEAD_LETTER_IDS_LISTED:
        listed += f" and {len(alert_keys) - DEAD_LETTER_IDS_LISTED} more"
    return Notice(
        key=f"dead-{channel}-{first_id}",
        title=f"Alerts to {channel} could not be delivered",
        body=(f"{len(alert_keys)} alert(s) to channel {channel} could not be delivered and were"
              f" dead-lettered ({error}): {listed}. Re-queue with: newsmon alerts retry --dead"),
    )


def channel_failing(channel: str, *, failing_since: datetime, now: datetime, failures: int,
                    error: str | None, pending: int | None = None) -> Notice:
    """A channel has failed every send for longer than ``delivery.channel_failing_after``."""
    minutes = (now - failing_since).total_seconds() / 60
    waiting = f" {pending} alert(s) wait for it." if pending else ""
    return Notice(
        key=f"channel-failing-{channel}-{_iso(failing_since)}",
        title=f"Channel failing: {channel}",
        body=(f"Every send to channel {channel} has failed for {minutes:.0f} min ({failures} in"
              f" a row). Last cause: {str(error or 'unknown')[:300]}.{waiting} newsmon keeps"
              " retrying with backoff; nothing is lost until alerts reach delivery.max_age."),
    )


def channel_recovered(channel: str, *, failing_since: datetime | None) -> Notice:
    return Notice(
        key=f"channel-recovered-{channel}-{_iso(failing_since)}", severity="normal",
        title=f"Channel recovered: {channel}",
        body=(f"Channel {channel} accepts messages again (it had been failing since"
              f" {_iso(failing_since)}); its waiting alerts are being sent."),
    )
