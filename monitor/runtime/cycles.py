"""What a poll did, and the one model of a cycle that ``newsmon once`` and the daemon share.

A *cycle* is a round of polls: ``newsmon once`` polls every feed together, the
daemon's feed jobs tick on their own and a cycle closes when every enabled feed
has been polled once (or after a window with at least one poll). Either way
the same :class:`CycleTally` adds up the outcomes and gives the figures
written as the cycle row, which ``newsmon status`` reads as proof of progress.
Pure values; the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["CycleFigures", "CycleReport", "CycleTally", "PollOutcome"]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment is not None else None


@dataclass
class PollOutcome:
    """What one poll of one feed did."""

    feed: str
    ok: bool
    not_modified: bool = False
    unchanged: bool = False  # 200 with the same body as last time: not parsed again
    not_due: bool = False  # next_poll_at still ahead, or its host paused: nothing fetched
    items: int = 0
    new_items: int = 0
    matches: int = 0
    alerts: int = 0
    failed_items: int = 0  # items skipped (unreadable) or failed (processing, their write)
    held: bool = False  # the GUID-churn breaker is open: matches stored, alerts held
    error_kind: str | None = None
    error: str | None = None
    retry_after: float | None = None
    network_down: bool = False  # failed while the whole network was down: not counted
    next_poll_at: datetime | None = None
    interval: float | None = None
    reason: str | None = None  # why that interval ("adaptive", "max-age", "backoff"...)
    seconds: float = 0.0
    url: str = ""

    def summary(self) -> str:
        if self.not_due:
            if self.reason == "host backoff":
                return f"not due (host backoff until {_iso(self.next_poll_at)})"
            return "not due"
        if not self.ok:
            tag = " (network down: not counted)" if self.network_down else ""
            return f"failed ({self.error_kind}): {self.error}{tag}"
        if self.not_modified:
            return "not modified (304)"
        if self.unchanged:
            return "unchanged"
        held = " (alerts held: GUID churn)" if self.held else ""
        failed = f", {self.failed_items} failed items" if self.failed_items else ""
        return (f"{self.items} items, {self.new_items} new, {self.matches} matches,"
                f" {self.alerts} alerts{failed}{held}")


@dataclass(frozen=True, slots=True)
class CycleFigures:
    """The counts a cycle row stores."""

    feeds_ok: int
    feeds_failed: int
    items_new: int
    matches: int
    alerts: int
    error: str | None = None


@dataclass
class CycleTally:
    """Poll outcomes since a cycle opened.

    ``started`` is the wall-clock start (stored); ``opened`` the monotonic one
    (for the window, immune to clock steps). A "not due" outcome counts as the
    feed considered this round, not as a poll.
    """

    started: datetime
    opened: float
    feeds_seen: set[str] = field(default_factory=set)
    ok: int = 0
    failed: int = 0
    items_new: int = 0
    matches: int = 0
    alerts: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, outcome: PollOutcome) -> None:
        self.feeds_seen.add(outcome.feed)
        if outcome.not_due:
            return
        self.ok += outcome.ok
        self.failed += not outcome.ok
        self.items_new += outcome.new_items
        self.matches += outcome.matches
        self.alerts += outcome.alerts
        if outcome.error_kind == "database" and outcome.error:
            self.errors.append(outcome.error)

    def add_all(self, outcomes: Iterable[PollOutcome]) -> CycleTally:
        for outcome in outcomes:
            self.add(outcome)
        return self

    @property
    def polls(self) -> int:
        return self.ok + self.failed

    def complete(self, feeds: frozenset[str], window: float, now: float) -> bool:
        """Every feed polled once, or ``window`` seconds passed with at least one poll."""
        if not self.polls:
            return False
        if feeds <= self.feeds_seen:
            return True
        return now - self.opened >= window

    def figures(self, *, network_down: bool = False) -> CycleFigures:
        error = ("network down" if network_down
                 else f"database: {self.errors[-1]}" if self.errors else None)
        return CycleFigures(feeds_ok=self.ok, feeds_failed=self.failed, items_new=self.items_new,
                            matches=self.matches, alerts=self.alerts, error=error)


@dataclass
class CycleReport:
    """Every outcome of one ``run_cycle``, in feed order."""

    outcomes: list[PollOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PollOutcome]:
        return [o for o in self.outcomes if not o.ok]
