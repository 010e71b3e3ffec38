"""``newsmon worker``: runs the queue's ``process_item`` tasks, one at a time per process.

A task is one item a poller queued. The worker runs the single-process pipeline's
last two steps on it, unchanged: ``process`` (its page, fetched through the shared
host slots; extract → analyse → match, in this process) and ``record`` (item +
article + matches + outbox rows in ONE transaction, story assignment before it).
Then the item's "queued" row goes. A crash anywhere before the record's commit
leaves the job "doing" under a worker whose heartbeat stops: another worker retries
it (``requeue_stalled``). A crash after the commit retries it too, harmlessly: the
article is then known, and a known article gets an item row and no second alert.

Scale by starting more processes, on any machine (``newsmon-worker@N.service``):
extraction and analysis are CPU-bound, so one task per process, one process per core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any, cast

from monitor.cluster import queue
from monitor.cluster.shared import GatedFetcher, Heartbeat, SharedHostsPipeline, StopSignal
from monitor.config import Config, FeedConfig
from monitor.errors import StorageError
from monitor.identity import article_key
from monitor.ingest.fetch import Fetcher
from monitor.records import utcnow
from monitor.runtime.cycles import PollOutcome
from monitor.runtime.pipeline import Pipeline, PollPlan, Selection
from monitor.runtime.processor import ArticleProcessor
from monitor.storage.leases import ClusterStore

__all__ = ["ItemHandler", "Worker"]

log = logging.getLogger(__name__)

KIND = "worker"


class ItemHandler:
    """Processes and records one queued item (what ``process_item`` runs here)."""

    def __init__(self, config: Config, pipeline: SharedHostsPipeline, cluster: ClusterStore,
                 heartbeat: Heartbeat | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.cluster = cluster
        self.heartbeat = heartbeat
        self.feeds = {f.url: f for f in config.feeds}
        self.done = 0

    def feed(self, url: str) -> FeedConfig:
        known = self.feeds.get(url)
        if known is not None:
            return known
        # A feed this worker's config lacks (a rollout in progress): its defaults.
        return FeedConfig(url=url)

    async def __call__(self, task: dict[str, Any]) -> None:
        pipeline, storage = self.pipeline, cast(Any, self.pipeline.storage)
        feed = self.feed(task["feed_url"])
        item = queue.item_from_args(task["item"])
        now = utcnow()
        record = await pipeline.db.call(storage.feeds.get, feed.url)
        # The poll's judgement travels with the task: its backlog flag (the worker sees
        # the feed after its poll succeeded) and whether the churn breaker held alerts.
        record = replace(record, last_success_at=None if task.get("first_poll")
                         else (record.last_success_at or now))
        outcome = PollOutcome(feed=feed.label, ok=True, url=feed.url)
        outcome.held = bool(task.get("held"))
        plan = PollPlan(feed, record, outcome, now)
        known = await pipeline.db.call(storage.items.known_article, article_key(item)) is not None
        selection = Selection(fresh=[item], to_process=[] if known else [item],
                              known=[item] if known else [], churn=cast(Any, None))
        if item.link and not known:
            await pipeline.learn_pause(item.link)  # a paused host: judged on its summary
        processed = await pipeline.process(plan, selection)
        await pipeline.record(plan, selection, processed)  # a StoreError: the task is retried
        with contextlib.suppress(StorageError):  # a leftover row only hides a re-poll of it
            await asyncio.to_thread(self.cluster.item_done, feed.url, item.guid)
        self.done += 1
        if self.heartbeat is not None:
            self.heartbeat.work_done = self.done
        log.debug("item %s of %s: %d match(es), %d alert(s)", item.guid[:80], feed.label,
                  outcome.matches, outcome.alerts)


class Worker:
    """One worker process: procrastinate's worker, a heartbeat, stalled-job retries."""

    def __init__(self, config: Config, url: str, *, beat: float = 10.0) -> None:
        self.config = config
        self.url = url
        self.beat = beat
        self.store: ClusterStore | None = None
        self.heartbeat: Heartbeat | None = None
        self.pipeline: SharedHostsPipeline | None = None
        self.handler: ItemHandler | None = None

    async def start(self) -> None:
        from monitor.cluster.shared import open_cluster
        from monitor.storage import open_storage

        # newsmon's schema first: open_storage refuses a database that holds other tables only.
        storage: Any = await asyncio.to_thread(open_storage, self.url)
        self.store = store = await asyncio.to_thread(open_cluster, self.url,
                                                     application="newsmon-worker")
        self.heartbeat = Heartbeat(store, KIND, detail={"queue": queue.QUEUE})
        await asyncio.to_thread(self.heartbeat.register)
        fetcher = GatedFetcher(Pipeline.make_fetcher(self.config), store, self.heartbeat.id,
                               per_host=self.config.fetch.per_host, timeout=self.config.fetch.timeout)
        processor = ArticleProcessor(self.config, workers=0)  # this process is the worker
        # The gated fetcher has the Fetcher's interface (fetch, aclose).
        self.pipeline = SharedHostsPipeline(self.config, storage, cast(Fetcher, fetcher), processor)
        self.pipeline.share_hosts(store)
        self.handler = ItemHandler(self.config, self.pipeline, store, self.heartbeat)

    async def requeue_stalled(self, app: Any) -> int:
        """Retry the jobs of workers whose heartbeat stopped (killed mid-task)."""
        jobs = await app.job_manager.get_stalled_jobs(
            queue=queue.QUEUE, seconds_since_heartbeat=3 * self.beat)
        count = 0
        for job in jobs:
            with contextlib.suppress(Exception):  # another worker retried it first
                await app.job_manager.retry_job(job)
                count += 1
        if count:
            log.info("retried %d job(s) of stopped workers", count)
        return count

    async def run(self, stop: StopSignal) -> None:
        await self.start()
        assert self.heartbeat is not None and self.handler is not None
        app = queue.make_app(self.url)
        queue.set_handler(self.handler)
        try:
            async with app.open_async():
                work = asyncio.get_running_loop().create_task(app.run_worker_async(
                    queues=[queue.QUEUE], concurrency=1, wait=True, name=self.heartbeat.id,
                    install_signal_handlers=False, update_heartbeat_interval=self.beat,
                    stalled_worker_timeout=3 * self.beat, delete_jobs="successful",
                    shutdown_graceful_timeout=self.config.service.stop_timeout))
                log.info("newsmon worker running: queue %s, id %s", queue.QUEUE, self.heartbeat.id)
                self.heartbeat.ready("worker: waiting for items")
                while not work.done():
                    await self.heartbeat.beat()
                    with contextlib.suppress(Exception):
                        await self.requeue_stalled(app)
                    if await stop.sleep(self.beat):
                        break
                work.cancel()  # procrastinate stops gracefully: the task in hand finishes
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
        finally:
            queue.set_handler(None)
            await self.stop()

    async def stop(self) -> None:
        if self.heartbeat is not None:
            await asyncio.to_thread(self.heartbeat.stopped)
        if self.pipeline is not None:
            await self.pipeline.fetcher.aclose()
            self.pipeline.processor.close()
            with contextlib.suppress(Exception):
                await self.pipeline.db.call(cast(Any, self.pipeline.storage).close)
            await asyncio.to_thread(self.pipeline.db.close)
        if self.store is not None:
            self.store.close()
        log.info("newsmon worker stopped (%d items)", self.handler.done if self.handler else 0)
