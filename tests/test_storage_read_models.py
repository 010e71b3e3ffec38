"""Read models: the feed table, the alert list and the status figures the CLI prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import FeedConfig
from monitor.records import AlertListRow, FeedTableRow
from monitor.storage.read_models import feed_table
from tests.helpers.storage import BACKENDS, FEED_A, FEED_B, new_target, two_feeds


@pytest.mark.parametrize("backend", BACKENDS)
def test_feed_table_rows_follow_the_config(backend: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    storage = two_feeds(new_target(backend, tmp_path, request))
    try:
        feed_id = storage.feeds.get(FEED_A).id
        storage.feeds.record_poll_failure(feed_id, kind="http_status", message="HTTP 500")
        configured = [FeedConfig(url=FEED_A, name="A"), FeedConfig(url=FEED_B, enabled=False),
                      FeedConfig(url="https://c.example/rss")]
        a, b, c = storage.views.feed_table(configured)
    finally:
        storage.close()
    assert isinstance(a, FeedTableRow)
    assert (a.name, a.failures, a.last_error_kind, a.last_error) == ("A", 1, "http_status",
                                                                     "HTTP 500")
    assert b.health == "disabled" and c.health == "new"
    assert feed_table(configured[2:], {})[0] == c
    # Never parsed, failing every poll: `feeds` says so, as `status` does (it said "ok").
    assert a.health == "failing"


@pytest.mark.parametrize("backend", BACKENDS)
def test_alert_list_and_status_figures(backend: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    target = new_target(backend, tmp_path, request)
    storage = two_feeds(target)
    try:
        first, = storage.outbox.enqueue_notice("one", "First", "b", ["admin"])
        second, = storage.outbox.enqueue_notice("two", "Second", "b", ["ops"])
        rows = storage.views.alert_list()
        assert all(isinstance(r, AlertListRow) for r in rows)
        assert [r.id for r in rows] == [second, first]  # newest first
        assert [r.id for r in storage.views.alert_list(channel="admin")] == [first]
        assert storage.views.alert_list(status="dead") == []
        figures = storage.views.status_figures()
    finally:
        storage.close()
    assert figures.alert_counts == {"pending": 2} and figures.last_cycle is None
    assert [f.url for f in figures.feeds] == [FEED_A, FEED_B]
    assert figures.database == str(target) and figures.database_bytes > 0  # a URL without password
