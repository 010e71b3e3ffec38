"""Wiring of the stages for one feed poll and for one full cycle.

    fetch feed ─► parse ─► unseen items ─► fetch pages ─► [worker pool:
    extract ─► analyse ─► match] ─► route ─► store (one transaction per item)

Delivery (the alert stage) runs as its own job, reading the outbox. The poll
state of a feed lives in the database; the pipeline remembers only what is
about servers rather than feeds (recent network failures, hosts that asked
for a pause), in memory.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from multiprocessing import get_context
from typing import Any

from monitor.analysis.extract import build_article
from monitor.config import Config, FeedConfig
from monitor.delivery.routing import admin_channels, route
from monitor.ingest.cadence import (
    HOST_BACKOFF_STATUSES,
    NETWORK_KINDS,
    HostBackoff,
    NetworkWatch,
    PollState,
    Schedule,
    cycle_network_down,
    feed_bounds,
    host_backoff_seconds,
    is_due,
    next_poll,
    origin_of,
    tick_interval,
)
from monitor.ingest.feed_health import evaluate
from monitor.ingest.fetch import Fetcher
from monitor.ingest.netguard import EgressPolicy
from monitor.ingest.parse import check_expat, parse_feed
from monitor.models import (
    ArticleInput,
    FeedItem,
    FetchError,
    FetchResult,
    ParsedFeed,
    ProcessedArticle,
    StageError,
    TopicMatch,
)
from monitor.rules.classifier import Classifier
from monitor.runtime.worker import init_worker, process_article, process_in_worker
from monitor.storage.store import Store, StoreError, dedup_key, iso, parse_iso, utcnow

# Feed bodies at least this big are parsed in the worker processes (when running).
PARSE_IN_WORKER_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class PollOutcome:
    """What one poll of one feed did."""

    feed: str
    ok: bool
    not_modified: bool = False
    unchanged: bool = False  # 200 with the same body as last time: not parsed again
    not_due: bool = False  # next_poll_at still ahead, or its host paused: nothing fetched
    items: int = 0
    new_items: int = 0
    matches: int = 0
    alerts: int = 0
    held: bool = False  # the GUID-churn breaker is open: matches stored, alerts held
    error_kind: str | None = None
    error: str | None = None
    retry_after: float | None = None
    network_down: bool = False  # failed while the whole network was down: not counted
    next_poll_at: datetime | None = None
    interval: float | None = None
    reason: str | None = None  # why that interval ("adaptive", "max-age", "backoff"...)
    seconds: float = 0.0
    url: str = ""

    def summary(self) -> str:
        if self.not_due:
            if self.reason == "host backoff":
                return f"not due (host backoff until {iso(self.next_poll_at)})"
            return "not due"
        if not self.ok:
            tag = " (network down: not counted)" if self.network_down else ""
            return f"failed ({self.error_kind}): {self.error}{tag}"
        if self.not_modified:
            return "not modified (304)"
        if self.unchanged:
            return "unchanged"
        held = " (alerts held: GUID churn)" if self.held else ""
        return (f"{self.items} items, {self.new_items} new, {self.matches} matches,"
                f" {self.alerts} alerts{held}")


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
        self._executor: ProcessPoolExecutor | None = None
        self._local: Classifier | None = None

    def start(self) -> None:
        """Start the worker pool (or the in-process classifier); idempotent."""
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

    async def parse(self, content: bytes, **kwargs: Any) -> ParsedFeed:
        """Parse feed bytes off the event loop.

        feedparser is pure Python and holds the GIL: in a thread, a big feed
        still slows the loop down (it gets the GIL back every few ms). A body
        over ``PARSE_IN_WORKER_BYTES`` goes to the worker processes when they
        are running; small ones (almost all) stay in a thread, where the cost
        of shipping bytes to another process would exceed the parse.
        """
        if self._executor is not None and len(content) >= PARSE_IN_WORKER_BYTES:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(parse_feed, content, **kwargs))
        return await asyncio.to_thread(parse_feed, content, **kwargs)

    def worker_pids(self) -> list[int]:
        """The pool's process ids (for memory figures); empty when in-process."""
        if self._executor is None:
            return []
        return [p.pid for p in self._executor._processes.values() if p.pid is not None]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class Pipeline:
    """Polls feeds and stores what they bring. One instance per daemon.

    The only state it keeps between polls is in memory and about servers, not
    feeds: a :class:`NetworkWatch` (recent outcomes, to tell "the network is
    down" from "this feed is down") and a :class:`HostBackoff` (origins that
    answered 429/503). A feed's poll state, schedule and health live in the
    database.
    """

    def __init__(self, config: Config, store: Store, fetcher: Fetcher,
                 processor: ArticleProcessor) -> None:
        check_expat()  # refuse to parse untrusted XML with an unsafe libexpat
        self.config = config
        self.store = store
        self.fetcher = fetcher
        self.processor = processor
        self.network = NetworkWatch(window=config.fetch.outage_window,
                                    min_hosts=config.fetch.outage_hosts)
        self.hosts = HostBackoff()
        # Their clock: monotonic, so a wall-clock step cannot stretch a pause; tests move it.
        self.clock: Callable[[], float] = time.monotonic

    @staticmethod
    def make_fetcher(config: Config) -> Fetcher:
        policy = EgressPolicy(allowed_networks=config.fetch.allow_networks,
                              allowed_ports=config.fetch.allowed_ports)
        return Fetcher(user_agent=config.fetch.user_agent, timeout=config.fetch.timeout,
                       max_bytes=config.fetch.max_feed_bytes, concurrency=config.fetch.concurrency,
                       per_host=config.fetch.per_host, policy=policy)

    def job_interval(self, feed: FeedConfig) -> float:
        """How often a scheduler should call ``poll(feed)`` (see ``polling.tick_interval``)."""
        return tick_interval(feed, self.config.fetch)

    async def poll(self, feed: FeedConfig, *, force: bool = False) -> PollOutcome:
        """Poll one feed if it is due (always with ``force``); record the result.

        A failure counts against the feed unless the whole network looks down
        (network errors from several hosts, and no success, in a short window).
        Even with ``force``, nothing is sent to a host that asked for a pause
        (429/503): the poll returns "not due" with reason "host backoff".
        """
        outcome, row = await self._poll(feed, force=force)
        if outcome.not_due or row is None:
            return outcome  # nothing fetched, or nothing more can be recorded
        now = self.clock()
        self.network.record(now, feed.url, ok=outcome.ok, kind=outcome.error_kind)
        if not outcome.ok:
            down = outcome.error_kind in NETWORK_KINDS and self.network.network_down(now)
            self._record_failure(feed, row, outcome, counted=not down)
        return outcome

    async def _poll(self, feed: FeedConfig, *, force: bool,
                    ) -> tuple[PollOutcome, dict[str, Any] | None]:
        """Fetch and ingest one feed, recording a success.

        A failure is left to the caller, which judges it against the other
        polls (network down or not); the feed's row is returned for that, or
        None when there is nothing to record (a database error, a host backoff).
        """
        started = time.monotonic()
        outcome = PollOutcome(feed=feed.label, ok=True, url=feed.url)
        row: dict[str, Any] | None = None
        try:
            now = utcnow()
            paused = self.hosts.remaining(feed.url, self.clock())
            if paused is not None:
                # Not the feed's failure, and not a poll: the feed's own schedule is untouched.
                outcome.not_due, outcome.reason = True, "host backoff"
                outcome.next_poll_at = now + timedelta(seconds=paused)
                return outcome, None
            row = self.store.feed_row(feed.url)
            if not force and not is_due(parse_iso(row.get("next_poll_at")), now):
                outcome.not_due = True
                return outcome, row
            result = await self.fetcher.fetch(
                feed.url, kind="feed", etag=row.get("etag"),
                last_modified=row.get("last_modified"), allow_private=feed.allow_private,
                headers=feed.headers, cookies=feed.cookies, proxy=feed.proxy,
                max_bytes=self.config.fetch.max_feed_bytes,
            )
            await self._ingest(feed, row, result, outcome)
        except StageError as exc:
            outcome.ok, outcome.error_kind, outcome.error = False, exc.kind, str(exc)
            if isinstance(exc, FetchError):
                outcome.retry_after = exc.retry_after
                self._back_off_host(feed.url, exc)
        except StoreError as exc:
            outcome.ok, outcome.error_kind, outcome.error = False, "database", str(exc)
            row = None  # the database is failing: the failure cannot be recorded either
        except Exception as exc:  # a bug or a library failure: this feed only, never the cycle
            log.exception("feed %s: internal error", feed.label)
            outcome.ok, outcome.error_kind = False, "internal"
            outcome.error = f"internal error: {type(exc).__name__}: {exc}"[:500]
        finally:
            outcome.seconds = time.monotonic() - started
        return outcome, row

    async def _ingest(self, feed: FeedConfig, row: dict[str, Any], result: FetchResult,
                      outcome: PollOutcome) -> None:
        """Parse a fetched feed, process its new items, record the success."""
        stored_hash = row.get("body_hash")
        body_hash = (stored_hash if result.not_modified
                     else hashlib.sha256(result.content).hexdigest())
        if result.not_modified or body_hash == stored_hash:
            # A 304, or the same bytes from a server without validators: no parse,
            # and no churn either (an open breaker closes).
            outcome.not_modified, outcome.unchanged = result.not_modified, not result.not_modified
            self._record_success(feed, row, outcome, result, body_hash=body_hash,
                                 churn_streak=self._calm_breaker(feed, row))
            return
        parsed = await self.processor.parse(
            result.content, url=feed.url, content_type=result.content_type,
            max_items=feed.max_items or self.config.fetch.max_items_per_poll,
            headers=result.headers, max_bytes=self.config.fetch.max_feed_bytes)
        for warning in parsed.warnings:
            log.info("feed %s: recovered from: %s", feed.label, warning)
        feed_id = int(row["id"])
        outcome.items = len(parsed.items)
        fresh = self.store.unseen(feed_id, parsed.items)
        outcome.new_items = len(fresh)
        streak = self._churn_streak(row, outcome)
        outcome.held = self._update_breaker(feed, row, streak)
        if fresh:
            await self._process_items(feed, feed_id, fresh, outcome)
        # A parsed feed without <ttl> stores 0: a <ttl> it dropped stops applying.
        self._record_success(feed, row, outcome, result, body_hash=body_hash,
                             ttl_minutes=parsed.ttl_minutes or 0, fresh=fresh,
                             churn_streak=streak)

    def _back_off_host(self, url: str, exc: FetchError) -> None:
        """A 429/503 pauses every request to that origin, not only this feed's or page's."""
        if exc.status not in HOST_BACKOFF_STATUSES:
            return
        seconds = host_backoff_seconds(exc.retry_after, self.config.fetch)
        paused = self.hosts.defer(url, seconds, self.clock())
        origin = origin_of(url)
        if paused is not None and origin is not None:
            scheme, host, port = origin
            log.info("HTTP %s from %s://%s:%s: no request to that host for %.0fs", exc.status,
                     scheme, host, port, paused)

    # -- recording ------------------------------------------------------------------

    @staticmethod
    def _poll_state(row: dict[str, Any], failures: int | None = None) -> PollState:
        return PollState(
            consecutive_failures=int(row.get("consecutive_failures") or 0)
            if failures is None else failures,
            items_per_day=row.get("items_per_day"),
            last_new_at=parse_iso(row.get("last_new_at")),
        )

    def _record_success(self, feed: FeedConfig, row: dict[str, Any], outcome: PollOutcome,
                        result: FetchResult, *, body_hash: str | None,
                        ttl_minutes: int | None = None, fresh: Sequence[FeedItem] = (),
                        churn_streak: int | None = None) -> None:
        """Store the validators and the next poll; ``ttl_minutes`` None keeps the stored one."""
        now = utcnow()
        feed_id = int(row["id"])
        updated = dict(row, consecutive_failures=0, failing_since=None)
        rate = last_new = None
        if fresh:
            newest = max(_effective_date(i, now) for i in fresh)
            stored = parse_iso(row.get("last_new_at"))
            last_new = newest if stored is None or newest > stored else stored
            rate = self.store.item_rate(feed_id, now)
            updated.update(items_per_day=rate, last_new_at=iso(last_new))
        ttl = ttl_minutes if ttl_minutes is not None else row.get("ttl_minutes")
        schedule = next_poll(
            outcome="ok", state=self._poll_state(updated), settings=self.config.fetch,
            bounds=feed_bounds(feed, self.config.fetch), now=now, headers=result.headers,
            ttl_minutes=ttl or None,
        )
        self._note_schedule(outcome, schedule)
        self.store.record_poll_success(
            feed_id, etag=result.etag, last_modified=result.last_modified, body_hash=body_hash,
            new_items=outcome.new_items, next_poll_at=schedule.next_poll_at,
            interval=schedule.interval, reason=schedule.reason, items_per_day=rate,
            last_new_at=last_new, churn_streak=churn_streak, ttl_minutes=ttl_minutes)
        updated["next_poll_at"] = iso(schedule.next_poll_at)
        self._check_health(updated, now)

    def _record_failure(self, feed: FeedConfig, row: dict[str, Any], outcome: PollOutcome,
                        *, counted: bool) -> None:
        """Record a failed poll and schedule the retry (backoff, or the floor when the
        network was down). Never raises: a database error is logged."""
        now = utcnow()
        failures = int(row.get("consecutive_failures") or 0) + (1 if counted else 0)
        outcome.network_down = not counted
        schedule = next_poll(
            outcome="error" if counted else "network", state=self._poll_state(row, failures),
            bounds=feed_bounds(feed, self.config.fetch), settings=self.config.fetch, now=now,
            retry_after=outcome.retry_after,
        )
        self._note_schedule(outcome, schedule)
        try:
            self.store.record_poll_failure(
                int(row["id"]), kind=outcome.error_kind or "error", message=outcome.error or "",
                next_poll_at=schedule.next_poll_at, counted=counted, interval=schedule.interval,
                reason=schedule.reason)
            if counted:
                self._check_health(dict(
                    row, consecutive_failures=failures,
                    failing_since=row.get("failing_since") or iso(now),
                    last_error_kind=outcome.error_kind, last_error=outcome.error,
                    next_poll_at=iso(schedule.next_poll_at)), now)
        except StoreError as exc:
            log.error("feed %s: could not record its failure: %s", feed.label, exc)

    @staticmethod
    def _note_schedule(outcome: PollOutcome, schedule: Schedule) -> None:
        outcome.next_poll_at = schedule.next_poll_at
        outcome.interval = schedule.interval
        outcome.reason = schedule.reason

    def _check_health(self, row: dict[str, Any], now: datetime) -> None:
        """Raise a notice when the feed starts failing or goes quiet, and on recovery."""
        change = evaluate(row, now, self.config.fetch)
        if change is None:
            return
        channels = admin_channels(self.config.channels)
        for notice in change.notices:
            self.store.enqueue_notice(notice.key, notice.title, notice.body, channels,
                                      severity=notice.severity)
            log.warning("feed %s: %s", row.get("name") or row.get("url"), notice.title)
        self.store.set_feed_health(int(row["id"]), change.state, change.since)

    # -- GUID churn circuit breaker ---------------------------------------------------

    def _churn_streak(self, row: dict[str, Any], outcome: PollOutcome) -> int:
        """Consecutive polls on which most of the feed's items were "new".

        The first poll of a feed (nothing stored yet) does not count: every item
        is new then by definition.
        """
        settings = self.config.fetch
        churning = (
            int(row.get("items_total") or 0) > 0
            and outcome.items >= settings.churn_min_items
            and outcome.new_items > settings.churn_ratio * outcome.items
        )
        return int(row.get("churn_streak") or 0) + 1 if churning else 0

    def _calm_breaker(self, feed: FeedConfig, row: dict[str, Any]) -> int | None:
        """Nothing new at all (304, same body): no churn; close an open breaker.

        Returns the streak to store (0), or None when there is nothing to change.
        """
        if not row.get("churn_streak") and not row.get("alerts_held_since"):
            return None
        self._update_breaker(feed, row, 0)
        return 0

    def _update_breaker(self, feed: FeedConfig, row: dict[str, Any], streak: int) -> bool:
        """Open or close the breaker; True while this feed's alerts are held."""
        settings = self.config.fetch
        held_since = parse_iso(row.get("alerts_held_since"))
        feed_id = int(row["id"])
        if streak >= settings.churn_polls:
            if held_since is None:
                now = utcnow()
                self.store.set_alerts_held(feed_id, now)
                self.store.enqueue_notice(
                    f"feed-churn-{feed_id}-{iso(now)}", f"Feed alerts held: {feed.label}",
                    f"{feed.url}: more than {settings.churn_ratio:.0%} of its items were new on"
                    f" {streak} polls in a row (GUID churn?). Its matches are stored but not"
                    " alerted until a poll brings mostly known items again.",
                    admin_channels(self.config.channels))
                log.warning("feed %s: GUID churn, alerts held", feed.label)
            return True
        if held_since is not None:
            self.store.set_alerts_held(feed_id, None)
            self.store.enqueue_notice(
                f"feed-unchurn-{feed_id}-{iso(held_since)}", f"Feed alerts resumed: {feed.label}",
                f"{feed.url} brings mostly known items again; its alerts are sent again.",
                admin_channels(self.config.channels), severity="normal")
        return False

    # -- items ------------------------------------------------------------------------

    async def _fetch_page(self, item: FeedItem) -> tuple[bytes | None, str | None]:
        """The item's page, or None and why not (the item is then judged on its summary)."""
        if not item.link:
            return None, "the item has no link"
        paused = self.hosts.remaining(item.link, self.clock())
        if paused is not None:
            return None, f"host backoff: its server asked for a pause ({paused:.0f}s left)"
        try:
            page = await self.fetcher.fetch(item.link, kind="page",
                                            max_bytes=self.config.fetch.max_page_bytes)
        except FetchError as exc:
            self._back_off_host(item.link, exc)
            log.info("page %s not fetched (%s): %s", item.link, exc.kind, exc)
            return None, f"{exc.kind}: {exc}"
        return page.content, None

    async def _process_items(self, feed: FeedConfig, feed_id: int, items: list[FeedItem],
                             outcome: PollOutcome) -> None:
        tags = tuple(feed.tags)
        pending: list[FeedItem] = []
        for item in items:
            if self.store.known_article(dedup_key(item)) is None:
                pending.append(item)
                continue
            # Another feed already brought this story: record the item only (no page,
            # no matching; record_item re-checks inside its transaction).
            article, _ = build_article(ArticleInput(item=item, feed_url=feed.url, feed_tags=tags))
            self.store.record_item(feed_id, feed.label, ProcessedArticle(item=item, article=article),
                                   route=_no_channels)
        fetch_pages = (feed.fetch_articles if feed.fetch_articles is not None
                       else self.config.fetch.fetch_articles)
        if fetch_pages:
            pages = await asyncio.gather(*(self._fetch_page(i) for i in pending))
        else:
            pages = [(None, "article fetching is off for this feed")] * len(pending)
        sources = [
            ArticleInput(item=i, feed_url=feed.url, feed_tags=tags, html=html, page_error=error)
            for i, (html, error) in zip(pending, pages, strict=True)
        ]
        processed = await self.processor.process(sources)
        # A feed whose breaker is open keeps its matches, without outbox rows.
        routing: Callable[[TopicMatch], Sequence[str]] = (
            _no_channels if outcome.held else functools.partial(route, channels=self.config.channels))
        for result in processed:
            recorded = self.store.record_item(feed_id, feed.label, result, route=routing)
            if recorded.new_article:
                outcome.matches += len(recorded.match_ids)
                outcome.alerts += len(recorded.alert_ids)
                for match in result.matches:
                    log.info("feed %s: %r matched %s (score %.1f)", feed.label,
                             result.article.title[:80], match.topic, match.score)

    # -- a whole cycle ------------------------------------------------------------------

    async def run_cycle(self, feeds: Sequence[FeedConfig] | None = None, *,
                        force: bool = True) -> CycleReport:
        """Poll every enabled feed once, concurrently (the fetcher bounds concurrency).

        ``force`` (the default, for ``newsmon once``) polls feeds that are not due
        yet. When every poll of the cycle fails with a network error, on several
        hosts, the network is down: no feed has the failure counted against it.
        A host backoff learnt during the cycle only holds back polls that start
        after it (the polls of a cycle start together; see docs/feeds.md).
        """
        feeds = [f for f in (feeds or self.config.feeds) if f.enabled]
        cycle_id = self.store.start_cycle()
        results = await asyncio.gather(*(self._poll(f, force=force) for f in feeds))
        polled = [(f, o, row) for f, (o, row) in zip(feeds, results, strict=True)
                  if not o.not_due]
        failed = [(f, o, row) for f, o, row in polled if not o.ok and row is not None]
        down = cycle_network_down([(f.url, o.error_kind) for f, o, _ in failed], len(polled),
                                  self.config.fetch.outage_hosts)
        now = self.clock()
        for feed, outcome, _ in polled:
            self.network.record(now, feed.url, ok=outcome.ok, kind=outcome.error_kind)
        for feed, outcome, row in failed:
            assert row is not None
            self._record_failure(feed, row, outcome, counted=not down)
        if down:
            log.error("every feed failed with a network error: the network looks down;"
                      " the failures are not counted against the feeds")
        outcomes = [o for o, _ in results]
        report = CycleReport(outcomes)
        for o in outcomes:
            log_poll(o)
        self.store.finish_cycle(
            cycle_id, feeds_ok=sum(o.ok for _, o, _ in polled), feeds_failed=len(report.failed),
            items_new=sum(o.new_items for o in outcomes), matches=sum(o.matches for o in outcomes),
            alerts=sum(o.alerts for o in outcomes),
            error="network down" if down else None,
        )
        return report


def _no_channels(match: TopicMatch) -> Sequence[str]:
    return ()


def _effective_date(item: FeedItem, now: datetime) -> datetime:
    """An item's date for rates and silence: published, but never after ``now``."""
    return min(item.published, now) if item.published else now


def log_poll(outcome: PollOutcome) -> None:
    # "not due" is DEBUG: the daemon's feed jobs tick at the floor cadence.
    level = (logging.DEBUG if outcome.not_due
             else logging.INFO if outcome.ok else logging.WARNING)
    log.log(level, "poll %s: %s (%.2fs)", outcome.feed, outcome.summary(), outcome.seconds,
            extra={"feed": outcome.feed})
