"""``newsmon poller``: polls the feeds it holds leases on, and queues their new items.

Each poll runs the single-process pipeline's steps up to select (plan → fetch+parse
→ select), then records "item queued + processing task deferred" in ONE transaction
(``ClusterStore.queue_items``, fenced by the feed's lease), then the poll's success
and schedule. Extraction, analysis, matching and the outbox write happen in a
``newsmon worker``.

Leases (``monitor/cluster/leases.py`` decides, ``monitor/storage/leases.py`` stores):
every round (a sixth of the lease period) the poller beats its heartbeat row, then
claims free feeds up to its fair share, releases the surplus and renews the rest. A
feed's poll starts only while the lease outlives the poll's budget (half the lease
period), and is cancelled at that budget, so two pollers never poll one feed at once;
a killed poller's feeds are free one lease period after its last renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from monitor.cluster import queue
from monitor.cluster.leases import may_poll, plan_leases
from monitor.cluster.shared import GatedFetcher, Heartbeat, SharedHostsPipeline, StopSignal
from monitor.config import Config, FeedConfig
from monitor.errors import StorageError
from monitor.identity import backlog_poll
from monitor.ingest.fetch import Fetcher
from monitor.models import ParsedFeed, ProcessedArticle
from monitor.runtime.pipeline import Pipeline, PollPlan, Selection, log_poll
from monitor.runtime.processor import ArticleProcessor, ItemFailure
from monitor.storage import StoreError
from monitor.storage.leases import ClusterStore, LeaseDecision, LeaseRow, QueuedItem

__all__ = ["LeaseLost", "Poller", "PollerPipeline"]

log = logging.getLogger(__name__)

KIND = "poller"


class LeaseLost(StoreError):
    """The feed's lease passed to another poller before this poll's items were queued."""


class PollerPipeline(SharedHostsPipeline):
    """The pipeline up to select; ``record`` queues the new items instead of processing them."""

    holder: str
    app: Any

    async def select(self, plan: PollPlan, parsed: ParsedFeed) -> Selection:
        """As the pipeline's, without the items already queued and not recorded yet."""
        items = parsed.items
        guids, hashes = await asyncio.to_thread(
            self.cluster.queued, plan.feed.url, [i.guid for i in items],
            [i.content_hash for i in items])
        if guids or hashes:
            parsed = replace(parsed, items=tuple(
                i for i in items if i.guid not in guids
                and not (i.content_hash and i.content_hash in hashes)))
        return await super().select(plan, parsed)

    async def process(self, plan: PollPlan, selection: Selection,
                      ) -> list[ProcessedArticle | ItemFailure]:
        return []  # a worker's job

    async def record(self, plan: PollPlan, selection: Selection,
                     processed: Any) -> None:
        """Queue every item new to this feed: its row and its task in one transaction."""
        feed = plan.feed
        first_poll = backlog_poll(plan.record.last_success_at is None, feed.backlog_as_seen,
                                  self.config.fetch.backlog_as_seen)
        items = [QueuedItem(item.guid, item.content_hash, {
            "feed_url": feed.url, "feed_id": plan.record.id, "feed": feed.label,
            "item": queue.item_args(item), "first_poll": first_poll,
            "held": bool(plan.outcome.held)}) for item in selection.fresh]
        if not items:
            return
        defer = functools.partial(queue.defer_on, self.app)
        queued = await asyncio.to_thread(self.cluster.queue_items, self.holder, feed.url, items,
                                         defer)
        if queued is None:
            raise LeaseLost(f"feed {feed.label}: its lease passed to another poller; nothing"
                            " recorded (the new holder polls it)")
        plan.outcome.alerts = 0  # alerts are a worker's to count


class Poller:
    """One poller process: lease rounds, a polling loop per held feed, a heartbeat."""

    def __init__(self, config: Config, url: str, *, lease: float = 90.0,
                 feeds: list[FeedConfig] | None = None) -> None:
        self.config = config
        self.url = url
        self.lease = lease
        self.round_interval = max(0.2, lease / 6)
        self.budget = lease / 2  # a poll is cancelled past this (it must end before its lease)
        self.feeds = {f.url: f for f in (feeds or config.feeds) if f.enabled}
        self.deadlines: dict[str, float] = {}  # feed url -> local monotonic lease expiry
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.store: ClusterStore | None = None
        self.heartbeat: Heartbeat | None = None
        self.pipeline: PollerPipeline | None = None
        self.polls = 0

    async def start(self) -> None:
        from monitor.cluster.shared import open_cluster
        from monitor.storage import open_storage

        if self.config.fetch.timeout > self.budget - 1:
            log.warning("fetch.timeout (%gs) is close to the poll budget (%gs, half the lease):"
                        " use a longer --lease", self.config.fetch.timeout, self.budget)
        # newsmon's schema first: open_storage refuses a database that holds other tables only.
        storage: Any = await asyncio.to_thread(open_storage, self.url)
        self.store = store = await asyncio.to_thread(open_cluster, self.url,
                                                     application="newsmon-poller")
        await asyncio.to_thread(storage.feeds.sync,
                                [(f.url, f.name, f.tags) for f in self.config.feeds])
        await asyncio.to_thread(store.sync_feeds, list(self.feeds))
        self.heartbeat = Heartbeat(store, KIND, detail={"feeds": 0, "lease": self.lease})
        await asyncio.to_thread(self.heartbeat.register)
        fetcher = GatedFetcher(Pipeline.make_fetcher(self.config), store, self.heartbeat.id,
                               per_host=self.config.fetch.per_host, timeout=self.config.fetch.timeout)
        processor = ArticleProcessor(self.config, workers=0)  # parses feeds; no pool
        # The gated fetcher has the Fetcher's interface (fetch, aclose).
        pipeline = PollerPipeline(self.config, storage, cast(Fetcher, fetcher), processor)
        pipeline.share_hosts(store)
        pipeline.holder = self.heartbeat.id
        pipeline.app = queue.make_app(self.url)
        self.pipeline = pipeline
        log.info("newsmon poller running: %d feeds, lease %gs, id %s", len(self.feeds),
                 self.lease, self.heartbeat.id)
        self.heartbeat.ready(f"poller: {len(self.feeds)} feeds")

    def decide(self, live: int, rows: list[LeaseRow], now: datetime) -> LeaseDecision:
        assert self.heartbeat is not None
        return plan_leases(self.heartbeat.id, rows, live_pollers=live, now=now,
                           period=timedelta(seconds=self.lease), total=len(self.feeds))

    async def lease_round(self) -> None:
        """Beat, then claim / release / renew; start and stop the feed loops to match."""
        assert self.store is not None and self.heartbeat is not None
        self.heartbeat.work_done = self.polls
        self.heartbeat.detail["feeds"] = len(self.tasks)
        await self.heartbeat.beat()
        try:
            live = await asyncio.to_thread(self.store.live_count, KIND, within=self.lease)
            before = time.monotonic()
            held, now = await asyncio.to_thread(
                self.store.lease_round, self.heartbeat.id, list(self.feeds), self.lease,
                functools.partial(self.decide, max(1, live)))
        except StorageError as exc:
            log.warning("lease round failed (the leases run out unless renewed): %s", exc)
            return
        self.deadlines = {url: before + (until - now).total_seconds() for url, until in held.items()}
        for url in list(self.tasks):
            if url not in held:
                self.tasks.pop(url).cancel()
        for url in held:
            if url not in self.tasks:
                self.tasks[url] = asyncio.get_running_loop().create_task(
                    self.feed_loop(self.feeds[url]), name=f"poll {url}")

    async def feed_loop(self, feed: FeedConfig) -> None:
        """Poll one held feed at its tick while the lease covers a whole poll."""
        assert self.pipeline is not None
        tick = self.pipeline.job_interval(feed)
        budget = timedelta(seconds=self.budget)
        while True:
            deadline = self.deadlines.get(feed.url)
            now = time.monotonic()
            # The lease's local deadline, as a moment: may_poll compares it with the budget.
            if deadline is not None and may_poll(
                    datetime.fromtimestamp(deadline), datetime.fromtimestamp(now), budget):
                try:
                    outcome = await asyncio.wait_for(self.pipeline.poll(feed), self.budget)
                except TimeoutError:
                    log.warning("feed %s: poll cancelled at its budget (%gs)", feed.label,
                                self.budget)
                else:
                    log_poll(outcome)
                    if not outcome.not_due:
                        self.polls += 1
            await asyncio.sleep(tick)

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
        if self.store is not None and self.heartbeat is not None:
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(self.store.release_all, self.heartbeat.id)
            await asyncio.to_thread(self.heartbeat.stopped)
        if self.pipeline is not None:
            await self.pipeline.fetcher.aclose()
            self.pipeline.processor.close()
            with contextlib.suppress(Exception):
                await self.pipeline.db.call(self.pipeline.storage.close)  # type: ignore[attr-defined]
            await asyncio.to_thread(self.pipeline.db.close)
        if self.store is not None:
            self.store.close()

    async def run(self, stop: StopSignal) -> None:
        await self.start()
        try:
            while True:
                await self.lease_round()
                if await stop.sleep(self.round_interval):
                    break
        finally:
            await self.stop()
            log.info("newsmon poller stopped (%d polls)", self.polls)
