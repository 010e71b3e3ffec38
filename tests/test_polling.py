"""The polling policy (monitor/ingest/cadence.py): pure functions of state, headers and now."""

from __future__ import annotations

import email.utils
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import FeedConfig, FetchSettings
from monitor.ingest.cadence import (
    Bounds,
    HostBackoff,
    NetworkWatch,
    PollState,
    adaptive_interval,
    cache_lifetime,
    cycle_network_down,
    error_backoff,
    feed_bounds,
    host_backoff_seconds,
    is_due,
    next_poll,
    origin_of,
    tick_interval,
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


def test_host_backoff_is_per_origin_keeps_the_longer_wait_and_expires() -> None:
    assert origin_of("HTTP://News.Example.org/feed") == ("http", "news.example.org", 80)
    assert origin_of("https://news.example.org:443/x") == ("https", "news.example.org", 443)
    assert origin_of("not a url") is None and origin_of("http://[::1/") is None
    hosts = HostBackoff()
    assert hosts.defer("http://news.example.org/a", 120, 1000.0) == 120
    assert hosts.remaining("http://NEWS.example.org:80/b?x=1", 1000.0) == 120  # same origin
    for other in ("https://news.example.org/a", "http://news.example.org:8080/a",
                  "http://example.org/a"):
        assert hosts.remaining(other, 1000.0) is None  # scheme, port and host all count
    assert hosts.defer("http://news.example.org/c", 30, 1050.0) == 70  # the longer one stands
    assert hosts.defer("http://news.example.org/c", 0, 1050.0) is None  # "retry now": no pause
    assert hosts.remaining("http://news.example.org/a", 1119.0) == 1
    assert hosts.remaining("http://news.example.org/a", 1120.0) is None  # over: forgotten
    assert hosts.remaining("http://news.example.org/a", 1000.0) is None
    assert hosts.defer("http://news.example.org/c", 300, 1200.0) == 300  # a new episode


def test_host_backoff_length_is_retry_after_capped_else_the_backoff_base() -> None:
    assert host_backoff_seconds(None, SETTINGS) == 120  # backoff_base
    assert host_backoff_seconds(600.0, SETTINGS) == 600
    assert host_backoff_seconds(10 * 3600.0, SETTINGS) == 4 * 3600  # retry_after_max
    assert host_backoff_seconds(-5.0, SETTINGS) == 0


def test_the_daemon_watchdog_allowance_follows_the_feed_jobs_tick() -> None:
    """Feed jobs tick at each feed's floor; a floor above the feeds' nominal interval
    (here 2 h against the 10 min default) must not starve the watchdog between ticks."""
    from monitor.config import Config
    from monitor.runtime.assembly import idle_limit

    config = Config(feeds=(FeedConfig(url="http://a.test/f", min_interval="2h"),))
    assert tick_interval(config.feeds[0], config.fetch) == 7200
    assert idle_limit(config) == 3 * 7200 + config.service.poll_stall_timeout
    assert idle_limit(Config()) is None
