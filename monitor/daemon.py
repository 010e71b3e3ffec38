"""The scheduler: one APScheduler job per feed, plus the delivery job.

Jobs only wire stages together (``Pipeline.poll``, ``Deliverer.deliver_due``).
Every feed job runs with ``max_instances=1`` and coalesced misfires, so a slow
feed or a clock jump never piles up polls; the delivery job runs first at
start-up so alerts left pending by a crash go out before anything new.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.alert import Deliverer, DeliveryReport
from monitor.config import Config, FeedConfig
from monitor.pipeline import ArticleProcessor, CycleReport, Pipeline, log_poll
from monitor.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The long-lived parts built from a config; closed together."""

    config: Config
    store: Store
    delivery_store: Store  # its own connection: delivery runs in a thread
    pipeline: Pipeline
    processor: ArticleProcessor
    deliverer: Deliverer
    closers: list = field(default_factory=list)

    @classmethod
    def build(cls, config: Config, *, workers: int | None = None) -> Runtime:
        deliverer = Deliverer(config.channels, config.delivery)  # validates channel URLs first
        store = Store(config.database_path())
        store.sync_feeds((f.url, f.name, f.tags) for f in config.feeds)
        delivery_store = Store(config.database_path())
        processor = ArticleProcessor(config, workers=workers)
        fetcher = Pipeline.make_fetcher(config)
        pipeline = Pipeline(config, store, fetcher, processor)
        return cls(config, store, delivery_store, pipeline, processor, deliverer)

    async def deliver(self) -> DeliveryReport:
        """Deliver every due alert (in batches), in a thread: apprise blocks."""
        total = DeliveryReport()
        while True:
            report = await asyncio.to_thread(self.deliverer.deliver_due, self.delivery_store)
            total.sent += report.sent
            total.failed += report.failed
            total.dead += report.dead
            total.errors.extend(report.errors)
            if report.sent + report.failed < self.config.delivery.batch or report.failed:
                return total

    async def aclose(self) -> None:
        await self.pipeline.fetcher.aclose()
        self.processor.close()
        self.store.close()
        self.delivery_store.close()


async def run_once(config: Config, *, workers: int | None = None) -> tuple[CycleReport, DeliveryReport]:
    """One full cycle: poll every feed, process, deliver pending alerts."""
    runtime = Runtime.build(config, workers=workers)
    try:
        report = await runtime.pipeline.run_cycle()
        delivery = await runtime.deliver()
    finally:
        await runtime.aclose()
    return report, delivery


class Daemon:
    """``newsmon run``: schedules the jobs and runs until SIGTERM or SIGINT."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime: Runtime | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()

    def _feed_job_id(self, feed: FeedConfig) -> str:
        return f"feed:{feed.url}"

    async def _poll_job(self, feed: FeedConfig) -> None:
        assert self.runtime is not None
        if self.stopping.is_set():
            return
        outcome = await self.runtime.pipeline.poll(feed)
        log_poll(outcome)

    async def _deliver_job(self) -> None:
        assert self.runtime is not None
        if self.stopping.is_set():
            return
        try:
            await self.runtime.deliver()
        except StoreError as exc:
            log.error("delivery: %s", exc)

    def schedule(self, scheduler: AsyncIOScheduler, now: datetime) -> None:
        feeds = [f for f in self.config.feeds if f.enabled]
        for index, feed in enumerate(feeds):
            interval = self.config.feed_interval(feed)
            # Spread the first polls over a few seconds instead of one burst.
            first = now + timedelta(seconds=min(index * 0.5, 30))
            scheduler.add_job(
                self._poll_job, "interval", seconds=interval, jitter=min(interval * 0.1, 60),
                id=self._feed_job_id(feed), args=[feed], next_run_time=first,
                max_instances=1, coalesce=True, misfire_grace_time=int(max(interval, 60)),
                replace_existing=True,
            )
        scheduler.add_job(
            self._deliver_job, "interval", seconds=self.config.delivery.interval, id="deliver",
            next_run_time=now, max_instances=1, coalesce=True, misfire_grace_time=60,
            replace_existing=True,
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.runtime = Runtime.build(self.config)
        scheduler = AsyncIOScheduler(event_loop=loop)
        self.scheduler = scheduler
        self.schedule(scheduler, datetime.now(scheduler.timezone))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        scheduler.start()
        log.info("newsmon running: %d feeds, %d channels, database %s",
                 len([f for f in self.config.feeds if f.enabled]), len(self.config.channels),
                 self.config.database_path())
        try:
            await self.stopping.wait()
        finally:
            log.info("stopping")
            scheduler.shutdown(wait=False)
            await self.runtime.aclose()
        return 0
