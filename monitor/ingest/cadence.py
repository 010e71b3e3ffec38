"""When to poll a feed next: a pure function of its state, the response and ``now``.

Nothing here does I/O or keeps state between calls (except the small
:class:`NetworkWatch`, an object its owner keeps), so every rule can be tested
with plain values. The pipeline calls :func:`next_poll` after each poll and
stores the result as the feed's ``next_poll_at``.

The rules, in order:

1. **Errors** back off exponentially with jitter: ``backoff_base * 2**(n-1)``,
   at most ``backoff_max``, never less than the floor. A feed is never given
   up on: the ceiling only bounds the wait. A ``Retry-After`` (429/503) wins
   when longer, capped at ``retry_after_max``.
2. **Success**: the base interval is the feed's own ``interval`` when set;
   otherwise, with ``adaptive`` on, one derived from the feed's rate of new
   items (Miniflux's entries-per-week idea: poll about twice per expected new
   item, slower when the feed has been silent for a while); otherwise
   ``default_interval``.
3. **Server hints** are lower bounds on a success: ``Cache-Control: max-age``
   (or ``Expires``), RSS ``<ttl>`` and a ``Retry-After`` on a 2xx/304 mean
   "nothing new before then", so polling earlier is wasted.
4. Everything is clamped to the feed's floor and ceiling
   (``min_interval``/``max_interval``, per-feed overrides allowed); a
   ``Retry-After`` may exceed the ceiling (the server asked), up to its cap.
5. **Per-host backoff**: a 429 or 503 tells every feed and page on that
   origin to wait (:class:`HostBackoff`), not only the feed that asked.
"""

from __future__ import annotations

import random as _random
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from monitor.config import FeedConfig, FetchSettings
from monitor.ingest.httpdates import http_date, retry_after_seconds

DAY = 86_400.0

# Failures that say "we could not reach anything", as opposed to "this feed is broken".
NETWORK_KINDS = frozenset({"connection", "timeout"})

Outcome = Literal["ok", "error", "network"]


@dataclass(frozen=True, slots=True)
class Bounds:
    """A feed's floor and ceiling, and its explicit interval if it has one."""

    floor: float
    ceiling: float
    interval: float | None = None  # the feed's own ``interval:``; None → adaptive/default


def feed_bounds(feed: FeedConfig, settings: FetchSettings) -> Bounds:
    """The floor/ceiling for a feed: its overrides, else the global ones."""
    floor = feed.min_interval if feed.min_interval is not None else settings.min_interval
    ceiling = feed.max_interval if feed.max_interval is not None else settings.max_interval
    ceiling = max(ceiling, floor)
    return Bounds(floor=floor, ceiling=ceiling, interval=feed.interval)


def tick_interval(feed: FeedConfig, settings: FetchSettings) -> float:
    """How often a scheduler should ask whether ``feed`` is due: its floor.

    Asking costs little (the pipeline answers "not due" at once until the
    computed next poll), so ticking at the floor honours every longer interval.
    """
    return feed_bounds(feed, settings).floor


# Stored reasons that came from the config alone (no error, no server hint): a new
# config may shorten them at once.
CONFIG_REASONS = frozenset({"interval", "adaptive", "default"})


def capped_next_poll(feed: FeedConfig, settings: FetchSettings, *, last_poll_at: datetime | None,
                     next_poll_at: datetime | None, reason: str | None) -> datetime | None:
    """The stored next poll, brought forward when the feed's ``interval:`` is now
    shorter than what scheduled it (after a restart or reload); None: keep it.

    Only a schedule the config made is capped: a backoff after errors or a
    server's hint (Retry-After, max-age, ttl) keeps its wait.
    """
    if feed.interval is None or next_poll_at is None or last_poll_at is None:
        return None
    if reason not in CONFIG_REASONS:
        return None
    bounds = feed_bounds(feed, settings)
    wanted = min(max(feed.interval, bounds.floor), bounds.ceiling)
    latest = last_poll_at + timedelta(seconds=wanted)
    return latest if latest < next_poll_at else None


@dataclass(frozen=True, slots=True)
class PollState:
    """What the schedule depends on, read from the feed's row."""

    consecutive_failures: int = 0  # including the failure being scheduled, if any
    items_per_day: float | None = None  # the feed's normal rate of new items
    last_new_at: datetime | None = None  # when the feed last brought a new item


@dataclass(frozen=True, slots=True)
class Schedule:
    next_poll_at: datetime
    interval: float  # seconds from ``now`` to ``next_poll_at``
    reason: str  # for logs and ``newsmon feeds``: "adaptive", "max-age", "backoff", ...


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# --- header hints --------------------------------------------------------------


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.I)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\b", re.I)


def cache_lifetime(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the response says it stays fresh: ``max-age``, else ``Expires``.

    ``no-cache``/``no-store`` and ``max-age=0`` give no hint; an unparseable or
    past ``Expires`` gives none either. Header names are lower case.
    """
    control = headers.get("cache-control", "")
    if control:
        if _NO_CACHE.search(control):
            return None
        m = _MAX_AGE.search(control)
        if m:
            seconds = float(m.group(1))
            return seconds if seconds > 0 else None
    when = http_date(headers.get("expires"))
    if when is not None:
        seconds = (when - now).total_seconds()
        return seconds if seconds > 0 else None
    return None


# --- adaptive interval -----------------------------------------------------------


def adaptive_interval(state: PollState, bounds: Bounds, now: datetime,
                      polls_per_item: float = 2.0) -> float:
    """An interval from the feed's rate of new items, within its bounds.

    A feed bringing ``r`` items a day is polled about ``polls_per_item`` times
    per expected item. When it has been silent for longer than its rate
    explains, the silence caps the rate (``1 / days since the last new item``)
    so a feed gone quiet slows down towards the ceiling. With no rate known
    (a new feed) the floor is used until the rate is learnt.
    """
    rate = state.items_per_day
    if rate is None:
        return bounds.floor
    if state.last_new_at is not None:
        silent_days = (now - state.last_new_at).total_seconds() / DAY
        if silent_days > 0:
            rate = min(rate, 1.0 / silent_days) if rate > 0 else 0.0
    if rate <= 0:
        return bounds.ceiling
    return clamp(DAY / (rate * polls_per_item), bounds.floor, bounds.ceiling)


def error_backoff(failures: int, bounds: Bounds, settings: FetchSettings,
                  rand: Callable[[], float]) -> float:
    """Exponential backoff with jitter for the ``failures``-th failure in a row.

    The jitter (75–100 % of the step) spreads feeds that failed together (a
    host going down) so they do not all come back in the same second.
    """
    exponent = min(max(failures, 1) - 1, 30)  # 2**30 already dwarfs any ceiling
    step = min(settings.backoff_base * (2.0 ** exponent), settings.backoff_max)
    step *= 0.75 + 0.25 * rand()
    return max(step, bounds.floor)


# --- the decision -----------------------------------------------------------------


def next_poll(
    *, outcome: Outcome, state: PollState, bounds: Bounds, settings: FetchSettings,
    now: datetime, headers: Mapping[str, str] | None = None, ttl_minutes: int | None = None,
    retry_after: float | None = None, rand: Callable[[], float] = _random.random,
) -> Schedule:
    """When to poll next, and why.

    ``outcome``: "ok" (200, unchanged body or 304), "error" (counted against
    the feed; ``state.consecutive_failures`` includes it), or "network" (the
    whole network was down: retried at the floor, not counted).
    ``retry_after`` is the server's Retry-After in seconds, if any.
    """
    headers = headers or {}
    if retry_after is None:
        retry_after = retry_after_seconds(headers.get("retry-after"), now=now)
    capped_retry = min(retry_after, settings.retry_after_max) if retry_after else None

    if outcome == "network":
        seconds, reason = bounds.floor, "network down"
    elif outcome == "error":
        seconds = error_backoff(state.consecutive_failures, bounds, settings, rand)
        reason = f"backoff after {state.consecutive_failures} failure(s)"
        if capped_retry is not None and capped_retry > seconds:
            seconds, reason = capped_retry, "retry-after"
        seconds = min(seconds, max(settings.backoff_max, capped_retry or 0.0))
        seconds = max(seconds, bounds.floor)
    else:
        if bounds.interval is not None:
            seconds, reason = bounds.interval, "interval"
        elif settings.adaptive:
            seconds, reason = adaptive_interval(state, bounds, now), "adaptive"
        else:
            seconds, reason = settings.default_interval, "default"
        hints = {
            "max-age": cache_lifetime(headers, now),
            "ttl": ttl_minutes * 60.0 if ttl_minutes and ttl_minutes > 0 else None,
        }
        for name, hint in hints.items():
            if hint is not None and hint > seconds:
                seconds, reason = hint, name
        seconds = clamp(seconds, bounds.floor, bounds.ceiling)
        if capped_retry is not None and capped_retry > seconds:
            seconds, reason = capped_retry, "retry-after"
    return Schedule(next_poll_at=now + timedelta(seconds=seconds), interval=seconds, reason=reason)


def is_due(next_poll_at: datetime | None, now: datetime, slack: float = 5.0) -> bool:
    """Whether a feed is due. ``slack`` seconds early still counts (scheduler jitter)."""
    return next_poll_at is None or next_poll_at <= now + timedelta(seconds=slack)


# --- per-host backoff -----------------------------------------------------------------

# Answers that mean "this server wants fewer requests", not "this feed is broken".
HOST_BACKOFF_STATUSES = frozenset({429, 503})
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) with the default port filled in; None for a URL without a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not host:
        return None
    return scheme, host, port or _DEFAULT_PORTS.get(scheme, 0)


def host_backoff_seconds(retry_after: float | None, settings: FetchSettings) -> float:
    """How long an origin that answered 429/503 is left alone.

    The server's ``Retry-After`` (capped at ``retry_after_max``); without one,
    ``backoff_base``: the first step a failing feed would wait anyway.
    """
    if retry_after is None:
        return settings.backoff_base
    return min(max(retry_after, 0.0), settings.retry_after_max)


class HostBackoff:
    """"Not before" times per origin, learnt from 429/503 answers.

    One feed's 429 must not be followed by requests from the other feeds (or
    article fetches) on the same server. Owned by one Pipeline and kept in
    memory, like :class:`NetworkWatch`, on the monotonic clock (``t``), so a
    wall-clock step cannot stretch a pause: after a restart only each feed's
    own stored backoff remains, which is enough for the feed that was told.
    Expired entries are dropped when looked up, so the map holds origins that
    are backing off now, plus at most one stale entry per host never polled again.
    """

    def __init__(self) -> None:
        self._until: dict[Origin, float] = {}

    def defer(self, url: str, seconds: float, t: float) -> float | None:
        """Leave ``url``'s origin alone for ``seconds`` from ``t`` (a longer pause
        already running stands). Returns the seconds the origin now waits."""
        key = origin_of(url)
        if key is None or seconds <= 0:
            return None
        until = max(t + seconds, self._until.get(key, t))
        self._until[key] = until
        return until - t

    def remaining(self, url: str, t: float) -> float | None:
        """Seconds until requests to ``url``'s origin may go out again; None if now."""
        key = origin_of(url)
        if key is None:
            return None
        until = self._until.get(key)
        if until is None:
            return None
        if until <= t:
            del self._until[key]
            return None
        return until - t


# --- whole-network failures ----------------------------------------------------------


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class NetworkWatch:
    """Notices when every host fails at once: the network, not the feeds, is down.

    Keeps the outcomes of the last ``window`` seconds (bounded by ``maxlen``).
    The network counts as down when, in the window, network-kind failures came
    from at least ``min_hosts`` different hosts and no poll succeeded. Owned by
    one Pipeline (no module-level state).
    """

    def __init__(self, window: float = 120.0, min_hosts: int = 3, maxlen: int = 10_000) -> None:
        self.window = window
        self.min_hosts = min_hosts
        self._events: deque[tuple[float, str, bool]] = deque(maxlen=maxlen)  # (t, host, ok)

    def record(self, t: float, url: str, *, ok: bool, kind: str | None = None) -> None:
        """Record one poll outcome at monotonic time ``t``.

        Failures that are not network-like (a 404, not a feed) prove the network
        works, so they count as successes here.
        """
        reachable = ok or (kind is not None and kind not in NETWORK_KINDS)
        self._events.append((t, host_of(url), reachable))

    def network_down(self, t: float) -> bool:
        while self._events and self._events[0][0] < t - self.window:
            self._events.popleft()
        failing: set[str] = set()
        for _, host, reachable in self._events:
            if reachable:
                return False
            failing.add(host)
        return len(failing) >= self.min_hosts


def cycle_network_down(failures: list[tuple[str, str | None]], total: int,
                       min_hosts: int) -> bool:
    """For one whole cycle: did every feed fail with a network kind, on several hosts?

    ``failures`` are (url, kind) of the failed polls; ``total`` the polls made.
    """
    if total == 0 or len(failures) < total:
        return False
    if any(kind not in NETWORK_KINDS for _, kind in failures):
        return False
    return len({host_of(url) for url, _ in failures}) >= max(min_hosts, 2)
