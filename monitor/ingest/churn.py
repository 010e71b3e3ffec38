"""The GUID-churn circuit breaker: a feed whose items are nearly all "new" poll after poll.

Some feeds regenerate every item's id on each request (a session id in the
link, a timestamp in the GUID). Without a breaker each poll would alert on the
whole feed again. When more than ``churn_ratio`` of a poll's items (of at least
``churn_min_items``) are new on ``churn_polls`` polls in a row, the breaker
opens: the feed's matches are still stored, its alerts are held, and the admin
channels are told; a poll that brings mostly known items again closes it.

Pure: :func:`judge` takes the feed's stored breaker state and one poll's
counts and returns what to store and which notice to raise. Lives beside
feed health (``feed_health.py``), the other per-feed judgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from monitor import notices
from monitor.config import FetchSettings
from monitor.notices import Notice

__all__ = ["BreakerState", "ChurnDecision", "calm", "judge"]


@dataclass(frozen=True, slots=True)
class BreakerState:
    """What is stored about one feed's breaker (and whether it ever brought items)."""

    feed_id: int
    label: str
    url: str
    streak: int  # consecutive polls on which most items were new
    held_since: datetime | None  # the breaker is open since then
    has_items: bool  # the feed has stored items: its first poll never counts as churn


@dataclass(frozen=True, slots=True)
class ChurnDecision:
    """What one poll changes: the streak to store, whether alerts are held, and since when."""

    streak: int
    held: bool
    held_since: datetime | None
    changed: bool  # held_since changed: store it
    notice: Notice | None = None


def judge(state: BreakerState, *, items: int, new_items: int, settings: FetchSettings,
          now: datetime) -> ChurnDecision:
    """One parsed poll with ``items`` items of which ``new_items`` were not seen before."""
    churning = (state.has_items and items >= settings.churn_min_items
                and new_items > settings.churn_ratio * items)
    streak = state.streak + 1 if churning else 0
    return _decide(state, streak, settings, now)


def calm(state: BreakerState, *, settings: FetchSettings, now: datetime) -> ChurnDecision | None:
    """A poll with nothing new at all (304, the same body): no churn, an open breaker closes.

    None when there is nothing to change.
    """
    if not state.streak and state.held_since is None:
        return None
    return _decide(state, 0, settings, now)


def _decide(state: BreakerState, streak: int, settings: FetchSettings,
            now: datetime) -> ChurnDecision:
    if streak >= settings.churn_polls:
        if state.held_since is not None:
            return ChurnDecision(streak, True, state.held_since, changed=False)
        notice = notices.churn_held(state.feed_id, state.label, state.url, now=now,
                                    ratio=settings.churn_ratio, streak=streak)
        return ChurnDecision(streak, True, now, changed=True, notice=notice)
    if state.held_since is not None:
        notice = notices.churn_resumed(state.feed_id, state.label, state.url,
                                       held_since=state.held_since)
        return ChurnDecision(streak, False, None, changed=True, notice=notice)
    return ChurnDecision(streak, False, None, changed=False)
