"""Feeds: the configured set, an unknown feed added alone, poll state as typed records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.records import FeedRecord, to_second, utcnow
from monitor.storage import Storage
from tests.helpers.storage import BACKENDS, FEED_A, FEED_B, new_target, two_feeds


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A two-feed database, on SQLite and on PostgreSQL."""
    storage = two_feeds(new_target(request.param, tmp_path, request))
    yield storage
    storage.close()


def enabled(storage: Storage) -> dict[str, bool]:
    return {url: bool(on) for url, on in storage.db.execute("SELECT url, enabled FROM feeds")}


def test_sync_disables_the_feeds_no_longer_configured(store: Storage) -> None:
    store.feeds.sync([(FEED_A, "A", ["x"])])
    assert enabled(store) == {FEED_A: True, FEED_B: False}
    store.feeds.sync([(FEED_A, "A", ["x"]), (FEED_B, "B", [])])
    assert enabled(store) == {FEED_A: True, FEED_B: True}


def test_an_unknown_feed_is_added_without_disabling_the_others(store: Storage) -> None:
    """The old ``feed_row``/``feed_state`` added it with a sync of that feed alone,
    which disabled every other configured feed."""
    record = store.feeds.get("https://c.example/rss")
    assert isinstance(record, FeedRecord) and record.url == "https://c.example/rss"
    assert record.enabled and record.consecutive_failures == 0 and record.health_state == "ok"
    assert enabled(store) == {FEED_A: True, FEED_B: True, "https://c.example/rss": True}
    assert store.feeds.get("https://c.example/rss").id == record.id  # added once


def test_a_poll_success_and_failure_read_back_typed(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    assert (feed.name, feed.tags, feed.next_poll_at) == ("A", ("x",), None)
    next_poll = utcnow() + timedelta(minutes=30)
    store.feeds.record_poll_success(feed.id, etag='"e1"', last_modified=None, body_hash="h",
                                    new_items=3, next_poll_at=next_poll, interval=1800.0,
                                    reason="adaptive", items_per_day=4.5, churn_streak=0)
    ok = store.feeds.get(FEED_A)
    assert ok.etag == '"e1"' and ok.items_total == 3 and ok.items_per_day == 4.5
    assert ok.next_poll_at == to_second(next_poll) and ok.last_success_at is not None
    assert ok.poll_interval == 1800.0 and ok.poll_reason == "adaptive"

    store.feeds.record_poll_failure(feed.id, kind="timeout", message="too slow", counted=False)
    down = store.feeds.get(FEED_A)
    assert down.consecutive_failures == 0 and down.failing_since is None  # network down
    store.feeds.record_poll_failure(feed.id, kind="http_status", message="HTTP 500")
    failing = store.feeds.get(FEED_A)
    assert failing.consecutive_failures == 1 and failing.failing_since is not None
    assert (failing.last_error_kind, failing.last_error) == ("http_status", "HTTP 500")
    assert failing.etag == '"e1"'  # validators stay


def test_health_and_breaker_state(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    since = utcnow()
    store.feeds.set_health(feed.id, "failing", since)
    store.feeds.set_alerts_held(feed.id, since)
    record = store.feeds.get(FEED_A)
    assert record.health_state == "failing" and record.health_since == to_second(since)
    assert record.alerts_held_since == to_second(since)
    store.feeds.set_alerts_held(feed.id, None)
    assert store.feeds.get(FEED_A).alerts_held_since is None
