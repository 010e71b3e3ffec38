"""Helpers shared by the feed tests (test_polling_*, test_feed_*, test_parse_*).

No tests here: it builds a real Pipeline (storage on a temp file, the real
Fetcher limited to 127.0.0.0/8) and offers a fast article processor for tests
that are about polling, not about matching.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from monitor.config import Config, FeedConfig
from monitor.models import Article, ArticleInput, ProcessedArticle
from monitor.runtime.pipeline import Pipeline
from monitor.runtime.processor import ArticleProcessor
from monitor.storage import open_storage
from tests.helpers.configs import ConfigFactory

T = TypeVar("T")
MATCHING_TITLE = "Russia and Ukraine agree ceasefire in talks on peace deal"  # 2 topics fire


# Nobody listens on port 9 (discard): queued alerts and notices just stay in the outbox.
PIPELINE_CHANNELS = ({"name": "desk", "url": "json://127.0.0.1:9/hook"},
                     {"name": "ops", "url": "json://127.0.0.1:9/ops", "admin": True})


def pipeline_config(tmp_path: Path, feeds: Sequence[FeedConfig | str], *, channels: bool = True,
                    **fetch: Any) -> Config:
    """A pipeline test's config: a desk and an admin channel, no article page fetches
    (the feed text is matched); ``fetch`` keys go to the ``fetch:`` section."""
    return ConfigFactory(tmp_path).load(
        database="test.db", feeds=feeds, channels=PIPELINE_CHANNELS if channels else (),
        fetch={"fetch_articles": False, **fetch})


class FastProcessor(ArticleProcessor):
    """Extract/analyse/match replaced by "the feed summary, no match": polls stay fast."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, workers=0)
        self.seen: list[ArticleInput] = []
        self.parses = 0

    async def parse(self, content: bytes, **kwargs: Any) -> Any:
        self.parses += 1
        return await super().parse(content, **kwargs)

    async def process(self, sources: Sequence[ArticleInput]) -> list[ProcessedArticle]:
        self.seen.extend(sources)
        return [ProcessedArticle(item=s.item, article=Article(
            title=s.item.title, summary=s.item.summary, body="", text_source="summary",
            url=s.item.link, feed_url=s.feed_url)) for s in sources]


def build(config: Config, *, real_matching: bool = False, **fetcher_kw: Any) -> Pipeline:
    store = open_storage(config)  # its SQLite file or PostgreSQL URL
    store.feeds.sync((f.url, f.name, f.tags) for f in config.feeds)
    processor = ArticleProcessor(config, workers=0) if real_matching else FastProcessor(config)
    fetcher = Pipeline.make_fetcher(config)
    if fetcher_kw:
        from monitor.ingest.fetch import Fetcher
        from monitor.ingest.netguard import EgressPolicy

        fetcher = Fetcher(user_agent=config.fetch.user_agent, timeout=config.fetch.timeout,
                          policy=EgressPolicy(allowed_networks=config.fetch.allow_networks),
                          **fetcher_kw)
    return Pipeline(config, store, fetcher, processor)


async def closing(pipeline: Pipeline, coro: Awaitable[T]) -> T:
    try:
        return await coro
    finally:
        await pipeline.fetcher.aclose()


def run(pipeline: Pipeline, coro: Awaitable[T]) -> T:
    """Run one coroutine against the pipeline, closing its fetcher after."""
    return asyncio.run(closing(pipeline, coro))


def rows(config: Config, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(config.database_path())
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def feed_row(config: Config, url: str) -> dict[str, Any]:
    db = sqlite3.connect(config.database_path())
    db.row_factory = sqlite3.Row
    try:
        return dict(db.execute("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone())
    finally:
        db.close()


def notices(config: Config) -> list[tuple[str, str]]:
    """(alert_key, title) of queued notices, oldest first."""
    return rows(config, "SELECT alert_key, title FROM alerts WHERE kind = 'notice' ORDER BY id")
