"""Items: one transaction per item, dedup within and across feeds, the write decision."""

from __future__ import annotations

import pytest

from monitor.identity import alert_key, article_key, item_planner, no_channels, plan_item
from monitor.ingest.parse import canonical_url
from monitor.models import TopicMatch
from monitor.storage import Storage
from tests.helpers.delivery import due_alerts, record
from tests.helpers.storage import (
    FEED_A,
    FEED_B,
    count,
    make_item,
    processed,
    two_feed_store,  # noqa: F401  (the store fixture)
)


def test_item_match_and_alerts_are_written_together(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    result = record(store, feed.id, "A", processed(make_item("1", "https://n.example/1")),
                    lambda m: ["slack", "mail"])
    assert result.new_article and len(result.match_ids) == 1 and len(result.alert_ids) == 2
    alerts = due_alerts(store)
    assert [a.channel for a in alerts] == ["slack", "mail"]
    assert alerts[0].evidence[0].marked == "A **truce**."
    assert alerts[0].severity == "high"
    assert alerts[0].alert_key == alert_key(result.article_id, "ceasefire", "slack")


def test_a_failure_mid_write_leaves_nothing_behind(store: Storage) -> None:
    """A crash between the match and its alert must not leave a match without an alert."""
    feed = store.feeds.get(FEED_A)

    def broken_route(match: TopicMatch) -> list[str]:
        raise RuntimeError("crash while routing")

    with pytest.raises(RuntimeError):
        record(store, feed.id, "A", processed(make_item("1", "https://n.example/1")), broken_route)
    assert [count(store, t) for t in ("items", "articles", "matches", "alerts")] == [0, 0, 0, 0]
    # The item is still unseen, so the next poll processes it again.
    assert store.items.unseen(feed.id, [make_item("1", "https://n.example/1")])


def test_same_story_from_two_feeds_alerts_once(store: Storage) -> None:
    a, b = store.feeds.get(FEED_A), store.feeds.get(FEED_B)
    first = record(store, a.id, "A", processed(make_item("a-1", "https://n.example/story")),
                   lambda m: ["slack"])
    second = record(
        store, b.id, "B", processed(make_item("b-9", "https://N.example/story?utm_source=b&fbclid=x")),
        lambda m: ["slack"])
    assert second.article_id == first.article_id and not second.new_article
    assert second.alert_ids == () and second.match_ids == ()
    assert count(store, "items") == 2 and count(store, "alerts") == 1


def test_the_write_takes_the_keys_it_is_given(store: Storage) -> None:
    """Storage makes no identity of its own: the article key and the plan are passed in."""
    feed = store.feeds.get(FEED_A)
    item = make_item("1", "https://n.example/1")
    result = store.items.record_item(feed.id, "A", processed(item), article_key="story:42",
                                     plan=item_planner(processed(item).matches, no_channels))
    assert store.items.known_article("story:42") == result.article_id
    assert store.items.known_article(article_key(item)) is None
    assert count(store, "matches") == 1 and count(store, "alerts") == 0


def test_duplicate_guids_within_a_feed_count_once(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    items = [make_item("dup", "https://n.example/1"), make_item("dup", "https://n.example/2")]
    assert [i.link for i in store.items.unseen(feed.id, items)] == ["https://n.example/1"]


def test_guid_churn_is_caught_by_the_content_hash(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    record(store, feed.id, "A", processed(make_item("v1", "https://n.example/1?utm_x=1")),
           lambda m: ["slack"])
    churned = make_item("v2", "https://n.example/1?session=2")  # new guid and URL, same story
    assert store.items.unseen(feed.id, [churned]) == []


def test_a_known_article_gets_no_new_matches_or_alerts() -> None:
    """The pure write decision: nothing new for a known article, each match routed otherwise."""
    (match,) = processed(make_item("1", "https://n.example/1")).matches
    assert plan_item(7, True, [match], lambda m: ["slack"]).matches == ()
    (planned,) = plan_item(7, False, [match], lambda m: ["slack", "mail"]).matches
    assert planned.match is match
    assert [(a.channel, a.alert_key) for a in planned.alerts] == [
        ("slack", "a7-ceasefire-slack"), ("mail", "a7-ceasefire-mail")]


def test_article_identity_is_the_canonical_url_else_the_content_hash() -> None:
    with_url = make_item("1", "https://n.example/a?utm_source=x")
    assert article_key(with_url) == "url:https://n.example/a"
    without = make_item("2", None)
    assert article_key(without) == "hash:" + without.content_hash


def test_canonical_urls_drop_tracking_and_refuse_other_schemes() -> None:
    assert canonical_url("HTTPS://News.Example:443/a?utm_source=x&id=7&fbclid=y#top") == \
        "https://news.example/a?id=7"
    for bad in ("javascript:alert(1)", "data:text/html,x", "/relative/path", "ftp://x.example/"):
        assert canonical_url(bad) is None
