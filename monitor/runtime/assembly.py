"""The long-lived parts built from a config, and the checks a config passes before use.

:class:`Runtime` is what one config builds (storage, pipeline, worker pool,
deliverer) and closes together; ``newsmon once`` is :func:`run_once` over it,
and the daemon (``daemon.py``) swaps one Runtime for another on SIGHUP.
:func:`prepare_config` checks everything a swap needs before it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from monitor.config import Config, FeedConfig, load_config, secret_values
from monitor.delivery.deliverer import Deliverer, DeliveryReport
from monitor.delivery.routing import routing_problems, unrouted_topics
from monitor.ingest.cadence import capped_next_poll, tick_interval
from monitor.logs import add_secrets
from monitor.models import ProcessedArticle
from monitor.rules.classifier import Classifier
from monitor.runtime.cycles import CycleReport
from monitor.runtime.pipeline import Pipeline, RecordedItem
from monitor.runtime.processor import ArticleProcessor
from monitor.storage import Storage, StoreError, open_storage
from monitor.yamlfile import ConfigErrors

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def in_daemon_thread(work: Callable[[], _T], name: str = "newsmon-delivery") -> _T:
    """Run blocking ``work`` in a daemon thread and await its result.

    Not ``asyncio.to_thread``: the interpreter joins the default executor's
    threads at exit, so a send stuck past the stop deadline would hold the
    exit (10 s after SIGTERM, and a send after "stopped"). A daemon thread is
    abandoned at exit instead; its claim makes the next start re-send it.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop is closed: exiting
                loop.call_soon_threadsafe(settle, future.set_exception, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, future.set_result, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future




@dataclass
class Runtime:
    """The long-lived parts built from a config; closed together."""

    config: Config
    storage: Storage
    delivery_storage: Storage  # its own connection: delivery runs in a thread
    pipeline: Pipeline
    processor: ArticleProcessor
    deliverer: Deliverer
    active: int = 0  # jobs using this runtime now (an old one is closed when it reaches 0)
    delivering: bool = False  # a delivery thread is using delivery_storage

    @classmethod
    def build(cls, config: Config, *, workers: int | None = None,
              observer: Callable[[Sequence[ProcessedArticle]], None] | None = None) -> Runtime:
        deliverer = Deliverer(config.channels, config.delivery)  # validates channel URLs first
        storage = open_storage(config.database_target())
        try:
            storage.feeds.sync((f.url, f.name, f.tags) for f in config.feeds)
            delivery_storage = open_storage(config.database_target())
        except StoreError:
            storage.close()
            raise
        processor = ArticleProcessor(config, workers=workers)
        fetcher = Pipeline.make_fetcher(config)
        pipeline = Pipeline(config, storage, fetcher, processor)
        if observer is not None:
            def observe(recorded: RecordedItem, observer: Callable[
                    [Sequence[ProcessedArticle]], None] = observer) -> None:
                observer([recorded.processed])
            pipeline.after_record.append(observe)
        return cls(config, storage, delivery_storage, pipeline, processor, deliverer)

    async def deliver(self, should_stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
        """Deliver every due alert (in batches), in a daemon thread: apprise blocks.

        ``should_stop`` is asked before every message (from the thread).
        """
        total = DeliveryReport()
        self.delivering = True
        outbox = self.delivery_storage.outbox
        try:
            while True:
                report = await in_daemon_thread(
                    lambda: self.deliverer.deliver_due(outbox, should_stop=should_stop))
                total.sent += report.sent
                total.failed += report.failed
                total.dead += report.dead
                total.messages += report.messages
                total.resent += report.resent
                total.stopped = total.stopped or report.stopped
                total.errors.extend(report.errors)
                if (report.messages < self.config.delivery.batch or report.failed
                        or report.stopped or should_stop()):
                    return total
        finally:
            self.delivering = False

    async def aclose(self) -> None:
        await self.pipeline.fetcher.aclose()
        self.processor.close()
        # Closed on the database thread, after any call still in flight there.
        with contextlib.suppress(Exception):
            await self.pipeline.db.call(self.storage.close)
        await asyncio.to_thread(self.pipeline.db.close)
        if not self.delivering:  # else the thread still uses it; the process is exiting
            self.delivery_storage.close()


async def run_once(config: Config, *, workers: int | None = None) -> tuple[CycleReport, DeliveryReport]:
    """One full cycle: poll every feed, process, deliver pending alerts."""
    runtime = Runtime.build(config, workers=workers)
    try:
        report = await runtime.pipeline.run_cycle()
        delivery = await runtime.deliver()
    finally:
        await runtime.aclose()
    return report, delivery


def validate_rules(config: Config) -> list[str]:
    """Compile the config's rules as the workers will, and check their routing.

    Raises ConfigErrors for a topic routed to an unknown channel or a channel
    naming an unknown topic (file:line, "did you mean"). Returns the topics no
    channel would receive (stored, never alerted: logged and shown by status).
    """
    classifier = Classifier.from_files(config.rule_files(), spacy_model=config.analysis.spacy_model)
    topics = classifier.ruleset.topics
    problems = routing_problems(topics, config.channels, config.source)
    if problems:
        raise ConfigErrors(problems)
    return unrouted_topics(topics, config.channels)


def prepare_config(path: os.PathLike[str] | str) -> Config:
    """Load a config and check everything a swap needs: schema, rules, channel URLs."""
    config = load_config(path)
    # Mask the new secrets first: apprise logs a URL it cannot parse.
    add_secrets(secret_values(config))
    Deliverer(config.channels, config.delivery)
    validate_rules(config)
    return config


def cap_changed_intervals(storage: Storage, config: Config) -> list[tuple[str, datetime]]:
    """Bring forward every stored next poll that a feed's now shorter ``interval:`` (after
    a restart or reload) says is too far: the new interval applies at once, not after
    the poll the old one scheduled. Returns (feed, new next poll) for the log."""
    moved = []
    for feed in enabled_feeds(config).values():
        record = storage.feeds.get(feed.url)
        when = capped_next_poll(feed, config.fetch, last_poll_at=record.last_poll_at,
                                next_poll_at=record.next_poll_at, reason=record.poll_reason)
        if when is not None:
            storage.feeds.set_next_poll(record.id, when)
            moved.append((feed.label, when))
    return moved


def job_interval(runtime: Runtime, feed: FeedConfig) -> float:
    """How often a feed's job ticks: the feed's floor. ``Pipeline.poll`` returns
    "not due" at once until the feed's computed next poll, so the polling policy
    (cache headers, adaptive rate, backoff) decides the real interval."""
    return runtime.pipeline.job_interval(feed)


def enabled_feeds(config: Config) -> dict[str, FeedConfig]:
    return {f.url: f for f in config.feeds if f.enabled}


@dataclass(frozen=True)
class FeedJobs:
    """The feed jobs of one config, worked out once: every job tick (each feed,
    at its floor) reads them, so they must not cost a pass over all the feeds."""

    config: Config
    by_url: dict[str, FeedConfig]
    labels: frozenset[str]
    shortest_tick: float | None  # the most frequent job's period; None with no feed
    cycle_window: float  # a daemon cycle closes after this long even if feeds are unseen

    @classmethod
    def of(cls, config: Config) -> FeedJobs:
        feeds = enabled_feeds(config).values()
        ticks = [tick_interval(f, config.fetch) for f in feeds]
        return cls(config, {f.url: f for f in feeds}, frozenset(f.label for f in feeds),
                   min(ticks) if ticks else None,
                   min([config.feed_interval(f) for f in feeds] or [600.0]))


def idle_limit(config: Config) -> float | None:
    """How long the daemon may go without finishing any poll before the watchdog starves.

    Every feed job finishes a poll (if only "not due") each tick, so a few of
    the shortest ticks, plus the time a poll may take.
    """
    shortest = FeedJobs.of(config).shortest_tick
    if shortest is None:
        return None
    return 3 * shortest + config.service.poll_stall_timeout
