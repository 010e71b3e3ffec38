"""Wiring of the stages for one feed poll and for one full cycle.

    fetch feed ─► parse ─► unseen items ─► fetch pages ─► [worker pool:
    extract ─► analyse ─► match] ─► route ─► store (one transaction per item)

Delivery (the alert stage) runs as its own job, reading the outbox. Nothing in
here holds state between polls except what is passed in; the poll state of a
feed lives in the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import get_context

from monitor.config import Config, FeedConfig
from monitor.fetch import Fetcher
from monitor.match import Classifier
from monitor.models import Article, ArticleInput, FeedItem, FetchError, ProcessedArticle, StageError
from monitor.netguard import EgressPolicy
from monitor.parse import parse_feed
from monitor.routing import route
from monitor.store import Store, StoreError, dedup_key, utcnow
from monitor.worker import init_worker, process_article, process_in_worker

log = logging.getLogger(__name__)


@dataclass
class PollOutcome:
    """What one poll of one feed did."""

    feed: str
    ok: bool
    not_modified: bool = False
    unchanged: bool = False  # 200 with the same body as last time: not parsed again
    items: int = 0
    new_items: int = 0
    matches: int = 0
    alerts: int = 0
    error_kind: str | None = None
    error: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.ok:
            return f"failed ({self.error_kind}): {self.error}"
        if self.not_modified:
            return "not modified (304)"
        if self.unchanged:
            return "unchanged"
        return (f"{self.items} items, {self.new_items} new, {self.matches} matches,"
                f" {self.alerts} alerts")


@dataclass
class CycleReport:
    outcomes: list[PollOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PollOutcome]:
        return [o for o in self.outcomes if not o.ok]


class ArticleProcessor:
    """Runs extract → analyse → match, in a process pool or in this process."""

    def __init__(self, config: Config, *, workers: int | None = None) -> None:
        self.rule_files = config.rule_files()
        self.spacy_model = config.analysis.spacy_model
        wanted = config.analysis.workers if workers is None else workers
        self.workers = (os.cpu_count() or 1) if wanted is None else wanted
        self._executor: Executor | None = None
        self._local: Classifier | None = None

    def start(self) -> None:
        if self.workers > 0 and self._executor is None:
            # "spawn": a fork of a process with a running event loop and threads is unsafe.
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn"),
                initializer=init_worker, initargs=(self.rule_files, self.spacy_model),
            )
        elif self.workers == 0 and self._local is None:
            self._local = Classifier.from_files(self.rule_files, spacy_model=self.spacy_model)

    async def process(self, sources: Sequence[ArticleInput]) -> list[ProcessedArticle]:
        self.start()
        loop = asyncio.get_running_loop()
        if self._executor is not None:
            futures = [loop.run_in_executor(self._executor, process_in_worker, s) for s in sources]
            return list(await asyncio.gather(*futures))
        assert self._local is not None
        return [process_article(s, self._local) for s in sources]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class Pipeline:
    """Polls feeds and stores what they bring. One instance per daemon."""

    def __init__(self, config: Config, store: Store, fetcher: Fetcher,
                 processor: ArticleProcessor) -> None:
        self.config = config
        self.store = store
        self.fetcher = fetcher
        self.processor = processor

    @staticmethod
    def make_fetcher(config: Config) -> Fetcher:
        policy = EgressPolicy(allowed_networks=config.fetch.allow_networks,
                              allowed_ports=config.fetch.allowed_ports)
        return Fetcher(user_agent=config.fetch.user_agent, timeout=config.fetch.timeout,
                       max_bytes=config.fetch.max_feed_bytes, concurrency=config.fetch.concurrency,
                       per_host=config.fetch.per_host, policy=policy)

    async def poll(self, feed: FeedConfig) -> PollOutcome:
        """Fetch, parse and process one feed; record its success or failure."""
        started = time.monotonic()
        outcome = PollOutcome(feed=feed.label, ok=True)
        try:
            state = self.store.feed_state(feed.url)
            result = await self.fetcher.fetch(
                feed.url, kind="feed", etag=state.etag, last_modified=state.last_modified,
                allow_private=feed.allow_private, headers=feed.headers, cookies=feed.cookies,
                proxy=feed.proxy, max_bytes=self.config.fetch.max_feed_bytes,
            )
            interval = self.config.feed_interval(feed)
            if result.not_modified:
                outcome.not_modified = True
                self.store.record_poll_success(
                    state.id, etag=result.etag or state.etag,
                    last_modified=result.last_modified or state.last_modified,
                    body_hash=state.body_hash, new_items=0,
                    next_poll_at=utcnow() + timedelta(seconds=interval))
                return outcome
            body_hash = hashlib.sha256(result.content).hexdigest()
            if body_hash == state.body_hash:
                # Same bytes as last time (a server without validators): skip the parse.
                outcome.unchanged = True
                self.store.record_poll_success(
                    state.id, etag=result.etag, last_modified=result.last_modified,
                    body_hash=body_hash, new_items=0,
                    next_poll_at=utcnow() + timedelta(seconds=interval))
                return outcome
            max_items = feed.max_items or self.config.fetch.max_items_per_poll
            parsed = await asyncio.to_thread(
                parse_feed, result.content, url=feed.url, content_type=result.content_type,
                max_items=max_items, headers=result.headers)
            outcome.items = len(parsed.items)
            fresh = self.store.unseen(state.id, parsed.items)
            outcome.new_items = len(fresh)
            if fresh:
                await self._process_items(feed, state.id, fresh, outcome)
            self.store.record_poll_success(
                state.id, etag=result.etag, last_modified=result.last_modified,
                body_hash=body_hash, new_items=outcome.new_items,
                next_poll_at=utcnow() + timedelta(seconds=interval))
        except StageError as exc:
            outcome.ok = False
            outcome.error_kind = exc.kind
            outcome.error = str(exc)
            if isinstance(exc, FetchError):
                outcome.retry_after = exc.retry_after
            self._record_failure(feed, outcome)
        except StoreError as exc:
            outcome.ok, outcome.error_kind, outcome.error = False, "database", str(exc)
        finally:
            outcome.seconds = time.monotonic() - started
        return outcome

    def _record_failure(self, feed: FeedConfig, outcome: PollOutcome) -> None:
        try:
            state = self.store.feed_state(feed.url)
            retry = outcome.retry_after or self.config.feed_interval(feed)
            self.store.record_poll_failure(
                state.id, kind=outcome.error_kind or "error", message=outcome.error or "",
                next_poll_at=utcnow() + timedelta(seconds=retry))
        except StoreError as exc:
            log.error("feed %s: could not record its failure: %s", feed.label, exc)

    async def _fetch_page(self, item: FeedItem) -> tuple[bytes | None, str | None]:
        if not item.link:
            return None, "the item has no link"
        try:
            page = await self.fetcher.fetch(item.link, kind="page",
                                            max_bytes=self.config.fetch.max_page_bytes)
        except FetchError as exc:
            log.info("page %s not fetched (%s): %s", item.link, exc.kind, exc)
            return None, f"{exc.kind}: {exc}"
        return page.content, None

    async def _process_items(self, feed: FeedConfig, feed_id: int, items: list[FeedItem],
                             outcome: PollOutcome) -> None:
        fetch_pages = (feed.fetch_articles if feed.fetch_articles is not None
                       else self.config.fetch.fetch_articles)
        pending: list[FeedItem] = []
        for item in items:
            if self.store.known_article(dedup_key(item)) is not None:
                # Another feed already brought this story: record the item only.
                self.store.record_item(
                    feed_id, feed.label,
                    ProcessedArticle(item=item, article=_summary_article(item, feed)),
                    route=lambda m: ())
            else:
                pending.append(item)
        if fetch_pages:
            pages = await asyncio.gather(*(self._fetch_page(i) for i in pending))
        else:
            pages = [(None, "article fetching is off for this feed")] * len(pending)
        sources = [
            ArticleInput(item=i, feed_url=feed.url, feed_tags=tuple(feed.tags), html=html,
                         page_error=error)
            for i, (html, error) in zip(pending, pages, strict=True)
        ]
        processed = await self.processor.process(sources)
        channels = self.config.channels
        for result in processed:
            recorded = self.store.record_item(
                feed_id, feed.label, result, route=lambda m: route(m, channels))
            if recorded.new_article:
                outcome.matches += len(recorded.match_ids)
                outcome.alerts += len(recorded.alert_ids)
                for match in result.matches:
                    log.info("feed %s: %r matched %s (score %.1f)", feed.label,
                             result.article.title[:80], match.topic, match.score)

    async def run_cycle(self, feeds: Sequence[FeedConfig] | None = None) -> CycleReport:
        """Poll every enabled feed once, concurrently (the fetcher bounds concurrency)."""
        feeds = [f for f in (feeds or self.config.feeds) if f.enabled]
        cycle_id = self.store.start_cycle()
        outcomes = await asyncio.gather(*(self.poll(f) for f in feeds))
        report = CycleReport(list(outcomes))
        for o in outcomes:
            log_poll(o)
        self.store.finish_cycle(
            cycle_id, feeds_ok=sum(o.ok for o in outcomes), feeds_failed=len(report.failed),
            items_new=sum(o.new_items for o in outcomes), matches=sum(o.matches for o in outcomes),
            alerts=sum(o.alerts for o in outcomes),
        )
        return report


def log_poll(outcome: PollOutcome) -> None:
    level = logging.INFO if outcome.ok else logging.WARNING
    log.log(level, "poll %s: %s (%.2fs)", outcome.feed, outcome.summary(), outcome.seconds,
            extra={"feed": outcome.feed})


def _summary_article(item: FeedItem, feed: FeedConfig) -> Article:
    return Article(title=item.title, summary=item.summary, body="", text_source="summary",
                   url=item.link, feed_url=feed.url, feed_tags=tuple(feed.tags),
                   published=item.published)
