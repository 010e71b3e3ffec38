"""The store: one transaction per item, dedup within and across feeds, the outbox order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.ingest.parse import canonical_url, content_hash
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TopicMatch
from monitor.storage.store import Store


def make_item(guid: str, link: str | None, title: str = "Truce talks", summary: str = "s") -> FeedItem:
    return FeedItem(guid=guid, link=link, canonical_url=canonical_url(link), title=title,
                    summary=summary, published=datetime(2024, 12, 25, tzinfo=UTC),
                    content_hash=content_hash(title, summary))


def processed(item: FeedItem, topics: tuple[str, ...] = ("ceasefire",)) -> ProcessedArticle:
    article = Article(title=item.title, summary=item.summary, body="Body text.", text_source="page",
                      url=item.link)
    matches = tuple(
        TopicMatch(topic=t, score=5.0, threshold=3.0, severity="high",
                   evidence=(EvidenceSentence("body", "A truce.", "A **truce**.", ("truce",)),))
        for t in topics
    )
    return ProcessedArticle(item=item, article=article, matches=matches)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "t.db")
    s.sync_feeds([("https://a.example/rss", "A", ["x"]), ("https://b.example/rss", "B", [])])
    return s


def count(store: Store, table: str) -> int:
    return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_item_match_and_alerts_are_written_together(store: Store) -> None:
    feed = store.feed_state("https://a.example/rss")
    result = store.record_item(feed.id, "A", processed(make_item("1", "https://n.example/1")),
                               route=lambda m: ["slack", "mail"])
    assert result.new_article and len(result.match_ids) == 1 and len(result.alert_ids) == 2
    alerts = store.due_alerts()
    assert [a.channel for a in alerts] == ["slack", "mail"]
    assert alerts[0].evidence[0].marked == "A **truce**."
    assert alerts[0].severity == "high"


def test_a_failure_mid_write_leaves_nothing_behind(store: Store) -> None:
    """A crash between the match and its alert must not leave a match without an alert."""
    feed = store.feed_state("https://a.example/rss")

    def broken_route(match: TopicMatch) -> list[str]:
        raise RuntimeError("crash while routing")

    with pytest.raises(RuntimeError):
        store.record_item(feed.id, "A", processed(make_item("1", "https://n.example/1")),
                          route=broken_route)
    assert [count(store, t) for t in ("items", "articles", "matches", "alerts")] == [0, 0, 0, 0]
    # The item is still unseen, so the next poll processes it again.
    assert store.unseen(feed.id, [make_item("1", "https://n.example/1")])


def test_same_story_from_two_feeds_alerts_once(store: Store) -> None:
    a = store.feed_state("https://a.example/rss")
    b = store.feed_state("https://b.example/rss")
    first = store.record_item(a.id, "A", processed(make_item("a-1", "https://n.example/story")),
                              route=lambda m: ["slack"])
    second = store.record_item(
        b.id, "B", processed(make_item("b-9", "https://N.example/story?utm_source=b&fbclid=x")),
        route=lambda m: ["slack"])
    assert second.article_id == first.article_id and not second.new_article
    assert second.alert_ids == ()
    assert count(store, "items") == 2 and count(store, "alerts") == 1


def test_duplicate_guids_within_a_feed_count_once(store: Store) -> None:
    feed = store.feed_state("https://a.example/rss")
    items = [make_item("dup", "https://n.example/1"), make_item("dup", "https://n.example/2")]
    assert [i.link for i in store.unseen(feed.id, items)] == ["https://n.example/1"]


def test_guid_churn_is_caught_by_the_content_hash(store: Store) -> None:
    feed = store.feed_state("https://a.example/rss")
    store.record_item(feed.id, "A", processed(make_item("v1", "https://n.example/1?utm_x=1")),
                      route=lambda m: ["slack"])
    churned = make_item("v2", "https://n.example/1?session=2")  # new guid and URL, same story
    assert store.unseen(feed.id, [churned]) == []


def test_outbox_is_oldest_first_and_failures_wait(store: Store) -> None:
    feed = store.feed_state("https://a.example/rss")
    for n in range(3):
        store.record_item(feed.id, "A", processed(make_item(str(n), f"https://n.example/{n}")),
                          route=lambda m: ["slack"])
    first, second, third = store.due_alerts()
    store.mark_failed(first.id, error="HTTP 500", retry_in=600)
    store.mark_sent(second.id)
    assert [a.id for a in store.due_alerts()] == [third.id]
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 1)
    assert [a.id for a in store.due_alerts(now=later)] == [first.id, third.id]
    store.mark_failed(third.id, error="HTTP 500", retry_in=0, dead=True)
    assert store.alert_counts() == {"pending": 1, "sent": 1, "dead": 1}


def test_notices_are_queued_once_per_key(store: Store) -> None:
    assert len(store.enqueue_notice("feed-1-down", "Feed A failing", "timeout", ["admin"])) == 1
    assert store.enqueue_notice("feed-1-down", "Feed A failing", "timeout", ["admin"]) == []
    (notice,) = store.due_alerts()
    assert notice.kind == "notice" and notice.body == "timeout"


def test_canonical_urls_drop_tracking_and_refuse_other_schemes() -> None:
    assert canonical_url("HTTPS://News.Example:443/a?utm_source=x&id=7&fbclid=y#top") == \
        "https://news.example/a?id=7"
    for bad in ("javascript:alert(1)", "data:text/html,x", "/relative/path", "ftp://x.example/"):
        assert canonical_url(bad) is None
