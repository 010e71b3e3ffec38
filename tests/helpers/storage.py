"""Builders for the storage tests: feed items, processed articles, a two-feed database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from monitor.ingest.parse import canonical_url, content_hash
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TopicMatch
from monitor.storage import Storage, open_storage

FEED_A, FEED_B = "https://a.example/rss", "https://b.example/rss"


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


def two_feeds(tmp_path: Path) -> Storage:
    """A fresh database with feeds A and B configured."""
    storage = open_storage(tmp_path / "t.db")
    storage.feeds.sync([(FEED_A, "A", ["x"]), (FEED_B, "B", [])])
    return storage


def count(storage: Storage, table: str) -> int:
    return int(storage.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
