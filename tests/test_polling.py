"""The polling policy (monitor/polling.py): pure functions of state, headers and now."""

from __future__ import annotations

import email.utils
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import FeedConfig, FetchSettings
from monitor.polling import (
    Bounds,
    NetworkWatch,
    PollState,
    adaptive_interval,
    cache_lifetime,
    cycle_network_down,
    error_backoff,
    feed_bounds,
    is_due,
    next_poll,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SETTINGS = FetchSettings(min_interval=60, max_interval=6 * 3600, default_interval=600,
                         backoff_base=120, backoff_max=3 * 3600, retry_after_max=4 * 3600)
BOUNDS = Bounds(floor=60, ceiling=6 * 3600)


def ok(**kw: object) -> float:
    params: dict[str, object] = {"outcome": "ok", "state": PollState(), "bounds": BOUNDS,
                                 "settings": SETTINGS, "now": NOW}
    params.update(kw)
    schedule = next_poll(**params)  # type: ignore[arg-type]
    assert schedule.next_poll_at == NOW + timedelta(seconds=schedule.interval)
    return schedule.interval


def test_per_feed_bounds_override_the_global_ones() -> None:
    feed = FeedConfig(url="http://127.0.0.1/f", min_interval="5m", max_interval="1h",
                      interval="20m")
    assert feed_bounds(feed, SETTINGS) == Bounds(floor=300, ceiling=3600, interval=1200)
    plain = feed_bounds(FeedConfig(url="http://127.0.0.1/g"), SETTINGS)
    assert plain == Bounds(floor=60, ceiling=6 * 3600, interval=None)


def test_cache_control_max_age_is_a_lower_bound_within_the_ceiling() -> None:
    state = PollState(items_per_day=1000.0, last_new_at=NOW)  # busy: adaptive says the floor
    assert ok(state=state) == 60
    assert ok(state=state, headers={"cache-control": "public, max-age=900"}) == 900
    # A hint beyond the ceiling is clamped to the ceiling.
    assert ok(state=state, headers={"cache-control": "max-age=999999"}) == 6 * 3600
    # no-cache / max-age=0 give no hint.
    assert ok(state=state, headers={"cache-control": "no-cache, max-age=900"}) == 60
    assert ok(state=state, headers={"cache-control": "max-age=0"}) == 60


def test_expires_header_and_rss_ttl_are_honoured() -> None:
    state = PollState(items_per_day=1000.0, last_new_at=NOW)
    expires = email.utils.format_datetime(NOW + timedelta(minutes=30), usegmt=True)
    assert ok(state=state, headers={"expires": expires}) == pytest.approx(1800)
    past = email.utils.format_datetime(NOW - timedelta(minutes=30), usegmt=True)
    assert ok(state=state, headers={"expires": past}) == 60
    assert ok(state=state, headers={"expires": "garbage"}) == 60
    assert ok(state=state, ttl_minutes=45) == 2700
    # max-age wins over Expires (RFC 9111).
    assert cache_lifetime({"cache-control": "max-age=120", "expires": expires}, NOW) == 120


def test_retry_after_on_success_and_error_is_capped() -> None:
    state = PollState(items_per_day=1000.0, last_new_at=NOW)
    assert ok(state=state, headers={"retry-after": "600"}) == 600
    # A Retry-After beyond the ceiling is honoured (the server asked), up to its cap.
    assert ok(state=state, headers={"retry-after": str(10 * 3600)}) == 4 * 3600
    err = next_poll(outcome="error", state=PollState(consecutive_failures=1), bounds=BOUNDS,
                    settings=SETTINGS, now=NOW, retry_after=10 * 3600.0, rand=lambda: 0.0)
    assert err.interval == 4 * 3600 and err.reason == "retry-after"
    date = email.utils.format_datetime(NOW + timedelta(seconds=900), usegmt=True)
    err = next_poll(outcome="error", state=PollState(consecutive_failures=1), bounds=BOUNDS,
                    settings=SETTINGS, now=NOW, headers={"retry-after": date}, rand=lambda: 0.0)
    assert err.interval == pytest.approx(900)


def test_errors_back_off_exponentially_with_jitter_up_to_a_ceiling_and_never_stop() -> None:
    lows = [error_backoff(n, BOUNDS, SETTINGS, lambda: 0.0) for n in range(1, 12)]
    highs = [error_backoff(n, BOUNDS, SETTINGS, lambda: 0.999999) for n in range(1, 12)]
    assert highs[:4] == pytest.approx([120, 240, 480, 960], rel=1e-4)
    assert lows[0] == pytest.approx(90)  # 75 % of the step: jitter spreads a herd
    assert all(b >= a for a, b in itertools.pairwise(highs))
    assert max(highs) == pytest.approx(3 * 3600, rel=1e-4)  # the ceiling, forever
    huge = next_poll(outcome="error", state=PollState(consecutive_failures=10_000),
                     bounds=BOUNDS, settings=SETTINGS, now=NOW)
    assert 60 <= huge.interval <= 3 * 3600  # still scheduled: never given up on


def test_a_network_outage_retries_at_the_floor() -> None:
    s = next_poll(outcome="network", state=PollState(consecutive_failures=7), bounds=BOUNDS,
                  settings=SETTINGS, now=NOW)
    assert s.interval == 60 and s.reason == "network down"


def test_adaptive_interval_follows_the_rate_of_new_items() -> None:
    busy = PollState(items_per_day=288.0, last_new_at=NOW)  # one item every 5 minutes
    assert adaptive_interval(busy, BOUNDS, NOW) == pytest.approx(150)  # two polls per item
    daily = PollState(items_per_day=1.0, last_new_at=NOW)
    assert adaptive_interval(daily, BOUNDS, NOW) == 6 * 3600  # clamped to the ceiling
    hourly = PollState(items_per_day=24.0, last_new_at=NOW)
    assert adaptive_interval(hourly, BOUNDS, NOW) == pytest.approx(1800)
    # Silent for two days although it used to be busy: it slows down.
    gone_quiet = PollState(items_per_day=288.0, last_new_at=NOW - timedelta(days=2))
    assert adaptive_interval(gone_quiet, BOUNDS, NOW) == 6 * 3600
    # A new feed (no rate yet) starts at the floor; a feed that never brings items, the ceiling.
    assert adaptive_interval(PollState(), BOUNDS, NOW) == 60
    assert adaptive_interval(PollState(items_per_day=0.0), BOUNDS, NOW) == 6 * 3600


def test_an_explicit_feed_interval_or_adaptive_off_wins_over_the_rate() -> None:
    busy = PollState(items_per_day=288.0, last_new_at=NOW)
    assert ok(state=busy, bounds=Bounds(60, 6 * 3600, interval=900)) == 900
    off = SETTINGS.model_copy(update={"adaptive": False})
    assert ok(state=busy, settings=off) == 600
    # An explicit interval below the feed's floor is raised to it.
    assert ok(bounds=Bounds(300, 3600, interval=30)) == 300


def test_is_due() -> None:
    assert is_due(None, NOW)
    assert is_due(NOW - timedelta(seconds=1), NOW)
    assert is_due(NOW + timedelta(seconds=3), NOW)  # within the scheduler's slack
    assert not is_due(NOW + timedelta(minutes=5), NOW)


def test_network_watch_tells_an_outage_from_one_dead_host() -> None:
    watch = NetworkWatch(window=60, min_hosts=3)
    watch.record(0, "http://a.test/f", ok=False, kind="connection")
    watch.record(1, "http://a.test/g", ok=False, kind="timeout")
    assert not watch.network_down(1)  # one host down is that host's problem
    watch.record(2, "http://b.test/f", ok=False, kind="connection")
    watch.record(3, "http://c.test/f", ok=False, kind="connection")
    assert watch.network_down(3)
    watch.record(4, "http://d.test/f", ok=True)
    assert not watch.network_down(4)  # something works: the feeds are to blame
    assert not watch.network_down(200)  # the window has passed
    watch.record(300, "http://a.test/f", ok=False, kind="connection")
    watch.record(301, "http://b.test/f", ok=False, kind="http_status")  # a reachable server
    watch.record(302, "http://c.test/f", ok=False, kind="connection")
    watch.record(303, "http://e.test/f", ok=False, kind="connection")
    assert not watch.network_down(303)


def test_cycle_network_down() -> None:
    fails = [(f"http://h{i}.test/f", "connection") for i in range(4)]
    assert cycle_network_down(fails, 4, 3)
    assert not cycle_network_down(fails[:3], 4, 3)  # one feed worked
    assert not cycle_network_down([*fails[:3], ("http://h9.test/", "not_a_feed")], 4, 3)
    assert not cycle_network_down([("http://one.test/a", "timeout"),
                                   ("http://one.test/b", "timeout")], 2, 3)  # a single host
