"""One poll of one feed, as steps: plan → fetch+parse → select → process → record.

    plan         is the feed due? its stored state (storage read), host pauses
    fetch+parse  conditional GET; an unchanged body is not parsed again
    select       which items are new to this feed, which articles another feed
                 already brought, and the GUID-churn breaker's judgement
    process      the items' pages, then extract → analyse → match in the pool
    record       one transaction per item (item + article + matches + outbox),
                 the after-record hooks, then the poll's success and schedule
                 (the poll's own record: ``runtime/poll_record.PollRecorder``)

APScheduler's feed jobs call :meth:`Pipeline.poll`, which runs the steps in
order; a queue engine can run ``process`` and ``record`` as tasks of their own
with the same values. Decisions are pure functions elsewhere (poll timing in
``ingest/cadence``, health in ``ingest/feed_health``, churn in
``ingest/churn``, identity in ``identity``, notice texts in ``notices``); this
module only wires them. The values the steps pass are in ``runtime/poll_steps``.
Delivery runs as its own job, reading the outbox.

The pipeline remembers in memory only what is about servers rather than feeds
(recent network failures, hosts that asked for a pause); a feed's poll state
lives in the database.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from monitor.analysis.extract import build_article
from monitor.config import Config, FeedConfig
from monitor.delivery.routing import route
from monitor.identity import (
    article_key,
    backlog_poll,
    item_planner,
    no_channels,
)
from monitor.ingest.cadence import (
    HOST_BACKOFF_STATUSES,
    NETWORK_KINDS,
    HostBackoff,
    NetworkWatch,
    cycle_network_down,
    host_backoff_seconds,
    is_due,
    origin_of,
    tick_interval,
)
from monitor.ingest.churn import BreakerState, ChurnDecision, calm, judge
from monitor.ingest.fetch import Fetcher, mask_url
from monitor.ingest.netguard import EgressPolicy
from monitor.ingest.parse import check_expat
from monitor.logs import hide_url_secrets
from monitor.models import (
    ArticleInput,
    FeedItem,
    FetchError,
    ParsedFeed,
    ProcessedArticle,
    StageError,
    TopicMatch,
)
from monitor.ports import PipelineStorage
from monitor.records import FeedRecord, RecordResult, utcnow
from monitor.runtime.cycles import CycleReport, CycleTally, PollOutcome
from monitor.runtime.dbthread import StorageThread
from monitor.runtime.poll_record import PollRecorder
from monitor.runtime.poll_steps import (
    AfterRecordHook,
    FetchedFeed,
    PollPlan,
    RecordedItem,
    Selection,
)
from monitor.runtime.processor import ArticleProcessor, ItemFailure
from monitor.runtime.stories import LazyStoryKeeper, story_options
from monitor.storage import StoreError

# The step values (runtime/poll_steps.py) stay importable from here: the cluster,
# the assembly and tests import them with the Pipeline.
__all__ = ["AfterRecordHook", "FetchedFeed", "Pipeline", "PollPlan", "RecordedItem", "Selection",
           "log_poll"]

log = logging.getLogger(__name__)

# A poll's page fetches get this many fetch timeouts in all (see Pipeline._fetch_pages).
PAGE_BUDGET_TIMEOUTS = 2


class Pipeline(PollRecorder):
    """Polls feeds and stores what they bring. One instance per daemon.

    The only state it keeps between polls is in memory and about servers, not
    feeds: a :class:`NetworkWatch` (recent outcomes, to tell "the network is
    down" from "this feed is down") and a :class:`HostBackoff` (origins that
    answered 429/503). A feed's poll state, schedule and health live in the
    database. ``after_record`` is the list of hooks run after each item write.
    """

    def __init__(self, config: Config, storage: PipelineStorage, fetcher: Fetcher,
                 processor: ArticleProcessor, *, db: StorageThread | None = None) -> None:
        check_expat()  # refuse to parse untrusted XML with an unsafe libexpat
        self.config = config
        self.storage = storage
        self.fetcher = fetcher
        self.processor = processor
        self.network = NetworkWatch(window=config.fetch.outage_window,
                                    min_hosts=config.fetch.outage_hosts)
        self.hosts = HostBackoff()
        # Every storage call goes through this one thread: a lock or slow disk waits there.
        self.db = db if db is not None else StorageThread()
        self.after_record: list[AfterRecordHook] = []
        # Story per new article, before its write (alerts per story); None: per article.
        self.stories: LazyStoryKeeper | None = (
            LazyStoryKeeper(storage, **story_options(config.delivery))
            if config.delivery.per_story else None)
        # Their clock: monotonic, so a wall-clock step cannot stretch a pause; tests move it.
        self.clock: Callable[[], float] = time.monotonic
        # The wall clock for stored times (tests move it).
        self.wall_clock: Callable[[], datetime] = utcnow

    @staticmethod
    def make_fetcher(config: Config) -> Fetcher:
        policy = EgressPolicy(allowed_networks=config.fetch.allow_networks,
                              allowed_ports=config.fetch.allowed_ports)
        return Fetcher(user_agent=config.fetch.user_agent, timeout=config.fetch.timeout,
                       max_bytes=config.fetch.max_feed_bytes, concurrency=config.fetch.concurrency,
                       per_host=config.fetch.per_host, policy=policy)

    def job_interval(self, feed: FeedConfig) -> float:
        """How often a scheduler should call ``poll(feed)`` (see ``cadence.tick_interval``)."""
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
            await self.record_failure(feed, row, outcome, counted=not down)
        return outcome

    async def _poll(self, feed: FeedConfig, *, force: bool,
                    ) -> tuple[PollOutcome, FeedRecord | None]:
        """Run the steps for one feed, recording a success.

        A failure is left to the caller, which judges it against the other
        polls (network down or not); the feed's record is returned for that, or
        None when there is nothing to record (a database error, a host backoff).
        """
        started = time.monotonic()
        outcome = PollOutcome(feed=feed.label, ok=True, url=feed.url)  # url: identity, never shown
        row: FeedRecord | None = None
        try:
            plan = await self.plan(feed, outcome, force=force)
            if plan is None:
                return outcome, None
            row = plan.record
            if outcome.not_due:
                return outcome, row
            fetched = await self.fetch_and_parse(plan)
            if fetched.parsed is None:
                # A 304, or the same bytes from a server without validators: no parse,
                # and no churn either (an open breaker closes).
                decision = calm(self._breaker(plan), settings=self.config.fetch, now=plan.now)
                await self._apply_churn(plan, decision)
                await self.record_success(plan, fetched, churn_streak=decision.streak if decision else None)
                return outcome, row
            selection = await self.select(plan, fetched.parsed)
            processed = await self.process(plan, selection)
            await self.record(plan, selection, processed)
            # A parsed feed without <ttl> stores 0: a <ttl> it dropped stops applying.
            await self.record_success(plan, fetched, ttl_minutes=fetched.parsed.ttl_minutes or 0,
                                fresh=selection.fresh, churn_streak=selection.churn.streak)
        except StageError as exc:
            outcome.ok, outcome.error_kind = False, exc.kind
            outcome.error = hide_url_secrets(str(exc), feed.url)
            if isinstance(exc, FetchError):
                outcome.retry_after = exc.retry_after
                self._back_off_host(feed.url, exc)
        except StoreError as exc:
            outcome.ok, outcome.error_kind = False, "database"
            outcome.error = hide_url_secrets(str(exc), feed.url)
            row = None  # the database is failing: the failure cannot be recorded either
        except Exception as exc:  # a bug or a library failure: this feed only, never the cycle
            log.exception("feed %s: internal error", feed.label)
            outcome.ok, outcome.error_kind = False, "internal"
            outcome.error = hide_url_secrets(f"internal error: {type(exc).__name__}: {exc}",
                                             feed.url)[:500]
        finally:
            outcome.seconds = time.monotonic() - started
        return outcome, row

    # -- plan ---------------------------------------------------------------------------

    async def plan(self, feed: FeedConfig, outcome: PollOutcome, *, force: bool) -> PollPlan | None:
        """Whether to poll now. None when its host asked for a pause (nothing to record);
        a plan with ``outcome.not_due`` set when the feed's next poll is still ahead."""
        now = self.wall_clock()
        paused = self.hosts.remaining(feed.url, self.clock())
        if paused is not None:
            # Not the feed's failure, and not a poll: the feed's own schedule is untouched.
            outcome.not_due, outcome.reason = True, "host backoff"
            outcome.next_poll_at = now + timedelta(seconds=paused)
            return None
        row = await self._db(self.storage.feeds.get, feed.url)
        if not force and not is_due(row.next_poll_at, now):
            outcome.not_due = True
        return PollPlan(feed, row, outcome, now)

    # -- fetch + parse --------------------------------------------------------------------

    async def fetch_and_parse(self, plan: PollPlan) -> FetchedFeed:
        """The feed's bytes (conditional GET) and, when they changed, its items."""
        feed, row = plan.feed, plan.record
        result = await self.fetcher.fetch(
            feed.url, kind="feed", etag=row.etag, last_modified=row.last_modified,
            allow_private=feed.allow_private, headers=feed.headers, cookies=feed.cookies,
            proxy=feed.proxy, max_bytes=self.config.fetch.max_feed_bytes,
        )
        stored_hash = row.body_hash
        body_hash = (stored_hash if result.not_modified
                     else hashlib.sha256(result.content).hexdigest())
        if result.not_modified or body_hash == stored_hash:
            plan.outcome.not_modified = result.not_modified
            plan.outcome.unchanged = not result.not_modified
            return FetchedFeed(result, body_hash, None)
        parsed = await self.processor.parse(
            result.content, url=feed.url, content_type=result.content_type,
            max_items=feed.max_items or self.config.fetch.max_items_per_poll,
            headers=result.headers, max_bytes=self.config.fetch.max_feed_bytes)
        for warning in parsed.warnings:
            log.info("feed %s: recovered from: %s", feed.label, warning)
        for guid, reason in parsed.skipped:  # an item the parser could not read: skipped
            plan.outcome.failed_items += 1
            log.warning("feed %s: item %s skipped: %s", feed.label, mask_url(guid)[:300], reason,
                        extra={"feed": feed.label})
        plan.outcome.items = len(parsed.items)
        return FetchedFeed(result, body_hash, parsed)

    # -- select ---------------------------------------------------------------------------

    async def select(self, plan: PollPlan, parsed: ParsedFeed) -> Selection:
        """The items new to this feed, and whether the churn breaker holds their alerts."""
        fresh, stored = await self._db(self._unseen_and_stored, plan.record.id, parsed.items)
        plan.outcome.new_items = len(fresh)
        decision = judge(self._breaker(plan), items=len(parsed.items), new_items=len(fresh),
                         settings=self.config.fetch, now=plan.now)
        await self._apply_churn(plan, decision)
        to_process: list[FeedItem] = []
        known: list[FeedItem] = []
        for item, already in zip(fresh, stored, strict=True):
            (known if already else to_process).append(item)
        return Selection(fresh, to_process, known, decision)

    def _unseen_and_stored(self, feed_id: int, items: Sequence[FeedItem],
                           ) -> tuple[list[FeedItem], list[bool]]:
        """On the database thread: the items new to the feed, and whether each one's
        article is stored already (one hop to the thread, not one an item)."""
        fresh = self.storage.items.unseen(feed_id, items)
        return fresh, [self.storage.items.known_article(article_key(i)) is not None for i in fresh]

    def _breaker(self, plan: PollPlan) -> BreakerState:
        row = plan.record
        return BreakerState(feed_id=row.id, label=plan.feed.label, url=plan.feed.url,
                            streak=row.churn_streak, held_since=row.alerts_held_since,
                            has_items=row.items_total > 0)

    async def _apply_churn(self, plan: PollPlan, decision: ChurnDecision | None) -> None:
        """Store a change of the breaker, and queue its notice."""
        if decision is None:
            return
        plan.outcome.held = decision.held
        if not decision.changed:
            return
        await self._db(self.storage.feeds.set_alerts_held, plan.record.id, decision.held_since)
        if decision.notice is not None:
            await self._queue_notice(decision.notice)
        if decision.held:
            log.warning("feed %s: GUID churn, alerts held", plan.feed.label)

    # -- process --------------------------------------------------------------------------

    async def process(self, plan: PollPlan, selection: Selection,
                      ) -> list[ProcessedArticle | ItemFailure]:
        """Fetch the pages of the articles not stored yet, then run the worker stages."""
        feed = plan.feed
        tags = tuple(feed.tags)
        fetch_pages = (feed.fetch_articles if feed.fetch_articles is not None
                       else self.config.fetch.fetch_articles)
        items = selection.to_process
        if fetch_pages:
            pages = await self._fetch_pages(plan, items)
        else:
            pages = [(None, "article fetching is off for this feed")] * len(items)
        sources = [
            ArticleInput(item=i, feed_url=feed.url, feed_tags=tags, html=html, page_error=error)
            for i, (html, error) in zip(items, pages, strict=True)
        ]
        return await self.processor.process(sources)

    async def _fetch_pages(self, plan: PollPlan, items: Sequence[FeedItem],
                           ) -> list[tuple[bytes | None, str | None]]:
        """The items' pages, within the poll's page budget (``PAGE_BUDGET_TIMEOUTS`` fetch
        timeouts): pages of a server that drips or hangs cannot keep a poll for
        ``items / per_host`` timeouts; those not fetched in time are judged on the summary."""
        if not items:
            return []
        tasks = [asyncio.ensure_future(self._fetch_page(i)) for i in items]
        budget = PAGE_BUDGET_TIMEOUTS * self.config.fetch.timeout
        _, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            log.warning("feed %s: page budget (%.0fs) spent: %d of %d pages not fetched",
                        plan.feed.label, budget, len(pending), len(items),
                        extra={"feed": plan.feed.label})
        pages: list[tuple[bytes | None, str | None]] = []
        for task in tasks:
            if task.cancelled():
                pages.append((None, f"the poll's page budget ({budget:.0f}s) was spent"))
            elif task.exception() is not None:
                pages.append((None, f"page fetch failed: {task.exception()!r}"[:300]))
            else:
                pages.append(task.result())
        return pages

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

    # -- record ---------------------------------------------------------------------------

    async def record(self, plan: PollPlan, selection: Selection,
                     processed: Sequence[ProcessedArticle | ItemFailure]) -> None:
        """Write each item in its own transaction, then run the after-record hooks.

        One item never fails the others: an item whose processing failed is
        stored as seen, without matches, with its reason as ``page_error`` (so it
        does not come back every poll); an item whose own write raises anything
        but a database error is skipped and logged. A database error (locked,
        full) stops the poll: the items not written stay unseen for the next one.
        """
        feed, outcome = plan.feed, plan.outcome
        tags = tuple(feed.tags)
        for item in selection.known:
            # Another feed already brought this article: the item row only (no page, no
            # matching; the write re-checks inside its transaction).
            article, _ = build_article(ArticleInput(item=item, feed_url=feed.url, feed_tags=tags))
            done = ProcessedArticle(item=item, article=article)
            result = await self._record_one(plan, done, item_planner((), no_channels))
            if result is not None:
                self._after_record(RecordedItem(feed, done, result))
        # A feed's first successful poll brings its backlog: stored and matched, not alerted
        # (fetch.backlog_as_seen, or the feed's own backlog_as_seen).
        first_poll = backlog_poll(plan.record.last_success_at is None, feed.backlog_as_seen,
                                  self.config.fetch.backlog_as_seen)
        # A feed whose breaker is open keeps its matches, without outbox rows.
        routing: Callable[[TopicMatch], Sequence[str]] = (
            no_channels if outcome.held else functools.partial(route, channels=self.config.channels))
        for outcome_of_item in processed:
            if isinstance(outcome_of_item, ItemFailure):
                await self._record_failed_item(plan, outcome_of_item)
                continue
            done = outcome_of_item
            story = await self._db(self.stories.plan_context, done) if self.stories else None
            result = await self._record_one(plan, done, item_planner(
                done.matches, routing, story=story, first_poll=first_poll))
            if result is None:
                continue
            if result.new_article:
                outcome.matches += len(result.match_ids)
                outcome.alerts += len(result.alert_ids)
                for match in done.matches:
                    log.info("feed %s: %r matched %s (score %.1f)", feed.label,
                             done.article.title[:80], match.topic, match.score)
            self._after_record(RecordedItem(feed, done, result))

    async def _record_one(self, plan: PollPlan, done: ProcessedArticle,
                          planner: Callable[..., Any]) -> RecordResult | None:
        """One item's transaction; None (and the item counted as failed) when it raised
        anything but a database error."""
        feed = plan.feed
        try:
            return await self._db(self.storage.items.record_item, plan.record.id, feed.label, done,
                                  article_key=article_key(done.item), plan=planner)
        except StoreError:
            raise
        except Exception as exc:  # this item's data broke its write: this item only
            self._note_failed_item(plan, done.item, f"could not be stored: {type(exc).__name__}:"
                                   f" {exc}")
            return None

    def _note_failed_item(self, plan: PollPlan, item: FeedItem, reason: str) -> None:
        plan.outcome.failed_items += 1
        log.warning("feed %s: item %s failed: %s", plan.feed.label, mask_url(item.guid)[:300],
                    reason[:500], extra={"feed": plan.feed.label})

    async def _record_failed_item(self, plan: PollPlan, failure: ItemFailure) -> None:
        """Store an item the workers could not process, as seen and unmatched, with why."""
        self._note_failed_item(plan, failure.item, failure.reason)
        feed = plan.feed
        try:
            article, _ = build_article(ArticleInput(item=failure.item, feed_url=feed.url,
                                                    feed_tags=tuple(feed.tags)))
        except Exception:  # even the feed text cannot be read: leave it unseen
            log.exception("feed %s: failed item %s not stored", feed.label, failure.item.guid)
            return
        done = ProcessedArticle(item=failure.item, article=article,
                                page_error=f"processing failed: {failure.reason}"[:500])
        result = await self._record_one(plan, done, item_planner((), no_channels))
        if result is not None:
            self._after_record(RecordedItem(feed, done, result))

    def _after_record(self, recorded: RecordedItem) -> None:
        for hook in self.after_record:
            try:
                hook(recorded)
            except Exception:  # a hook's bug must not lose the poll: the item is stored
                log.exception("after-record hook %r failed for %s", hook,
                              recorded.processed.item.link or recorded.processed.item.guid)

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
        cycle_id = await self._db(self.storage.ops.start_cycle)
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
            await self.record_failure(feed, row, outcome, counted=not down)
        if down:
            log.error("every feed failed with a network error: the network looks down;"
                      " the failures are not counted against the feeds")
        outcomes = [o for o, _ in results]
        for o in outcomes:
            log_poll(o)
        tally = CycleTally(started=self.wall_clock(), opened=now).add_all(outcomes)
        figures = tally.figures(network_down=down)
        await self._db(self.storage.ops.finish_cycle,
            cycle_id, feeds_ok=figures.feeds_ok, feeds_failed=figures.feeds_failed,
            items_new=figures.items_new, matches=figures.matches, alerts=figures.alerts,
            error=figures.error)
        return CycleReport(outcomes)


def log_poll(outcome: PollOutcome) -> None:
    # "not due" is DEBUG: the daemon's feed jobs tick at the floor cadence.
    level = (logging.DEBUG if outcome.not_due
             else logging.INFO if outcome.ok else logging.WARNING)
    log.log(level, "poll %s: %s (%.2fs)", outcome.feed, outcome.summary(), outcome.seconds,
            extra={"feed": outcome.feed})
