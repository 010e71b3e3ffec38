"""Bursts: a story or a topic gaining articles far above its recent baseline rate (pure).

Values in, a decision out; the clock is the ``now`` passed in. The keeper reads the
times from storage (when each of a story's articles, or each of a topic's matches, was
first seen) and asks ``judge``:

- recent = the articles seen in the last ``window`` (the one being assigned included);
- baseline rate = the articles seen in the ``baseline`` span before that window, per
  window-length, over the span the story or topic has really existed (at least one window);
- a burst: ``recent >= min_articles`` and ``recent >= factor × max(baseline, floor)``.

Nothing has a baseline before ``min_history``: a story or topic younger than that is
never judged (the first poll of a new database, a brand-new story, are not bursts; the
story's own first alert says it is new).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.identity import BURST_NOTE


@dataclass(frozen=True, slots=True)
class BurstPolicy:
    window: timedelta = timedelta(hours=1)  # "the last hour"
    baseline: timedelta = timedelta(hours=24)  # the span before the window the baseline is taken over
    factor: float = 4.0  # recent ≥ factor × baseline (per window)
    min_articles: int = 6  # and at least this many in the window
    floor: float = 0.5  # the baseline rate never counts as lower than this (articles per window)
    min_history: timedelta = timedelta(hours=6)  # younger than this: no baseline, no burst


@dataclass(frozen=True, slots=True)
class Burst:
    subject: str  # "story" or "topic <id>"
    recent: int
    baseline_rate: float  # articles per window-length before the window
    window: timedelta

    @property
    def note(self) -> str:
        """The message's line: "burst: 9 articles in the last hour, baseline 1.2/h"."""
        unit = _unit(self.window)
        span = "hour" if unit == "h" else _span(self.window)
        subject = "" if self.subject == "story" else f" ({self.subject})"
        return (f"{BURST_NOTE} {self.recent} articles in the last {span}, baseline "
                f"{self.baseline_rate:.1f}/{unit}{subject}")


def _unit(window: timedelta) -> str:
    return "h" if window == timedelta(hours=1) else _span(window)


def _span(window: timedelta) -> str:
    minutes = window.total_seconds() / 60
    return f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"


def judge(seen: Sequence[datetime], first_seen: datetime | None, now: datetime, *,
          subject: str = "story", policy: BurstPolicy = BurstPolicy(), adding: int = 1) -> Burst | None:
    """A burst, or None. ``seen``: when the subject's stored articles were seen (those since
    ``now - window - baseline`` suffice); ``first_seen``: its oldest (its history);
    ``adding``: articles not stored yet that count as seen now (the one being assigned)."""
    if first_seen is None or now - first_seen < policy.min_history:
        return None
    window_start = now - policy.window
    baseline_start = max(window_start - policy.baseline, first_seen)
    recent = sum(1 for moment in seen if window_start < moment <= now) + adding
    before = sum(1 for moment in seen if baseline_start <= moment <= window_start)
    span = max(window_start - baseline_start, policy.window)
    rate = before / (span / policy.window)
    if recent >= policy.min_articles and recent >= policy.factor * max(rate, policy.floor):
        return Burst(subject, recent, rate, policy.window)
    return None


def strongest(bursts: Sequence[Burst | None]) -> Burst | None:
    """The burst to name when both the story and a topic burst: the story's, else the largest."""
    found = [b for b in bursts if b is not None]
    if not found:
        return None
    stories = [b for b in found if b.subject == "story"]
    return stories[0] if stories else max(found, key=lambda b: b.recent / max(b.baseline_rate, 0.1))
