"""The scheduler: one APScheduler job per feed, plus delivery, heartbeat and upkeep.

Jobs only wire stages together (``Pipeline.poll``, ``Deliverer.deliver_due``).
Every feed job runs with ``max_instances=1`` and coalesced misfires, so a slow
feed or a clock jump never piles up polls; the delivery job runs first at
start-up so alerts left pending by a crash go out before anything new.

Lifecycle (see docs/operations.md):

- start: config and rules validated, database opened (and migrated), jobs
  scheduled, then ``READY=1``.
- heartbeat job: ``WATCHDOG=1`` + ``STATUS=`` while polls make progress
  (``service.ProgressMonitor``); a wedged loop or poll starves the watchdog.
- SIGHUP: everything of the new config is built and checked before the swap;
  on any error the old config stays in force and the error is logged.
- SIGTERM/SIGINT: ``STOPPING=1``, no new jobs, in-flight polls get
  ``service.stop_timeout`` then are cancelled (a cancelled poll has written
  nothing for its unfinished items, so they stay unseen), then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Config, FeedConfig, load_config, secret_values
from monitor.delivery.deliverer import ChannelError, Deliverer, DeliveryReport
from monitor.delivery.routing import admin_channels
from monitor.ingest.cadence import tick_interval
from monitor.logs import add_secrets
from monitor.models import ArticleInput, ProcessedArticle
from monitor.rules.classifier import Classifier
from monitor.runtime.clock import ClockGuard
from monitor.runtime.metrics import HttpEndpoint, Metrics
from monitor.runtime.pipeline import ArticleProcessor, CycleReport, Pipeline, PollOutcome, log_poll
from monitor.runtime.retention import maintain
from monitor.runtime.status import evaluate as evaluate_health
from monitor.runtime.systemd import TEST_WEDGE_ENV, Notifier, ProgressMonitor
from monitor.storage.store import Store, StoreError, iso, utcnow
from monitor.yamlfile import ConfigErrors

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
STATUS_INTERVAL = 15.0  # seconds between STATUS= updates when there is no watchdog
MAINTENANCE_FIRST_DELAY = 300.0  # the first upkeep waits for start-up polls to settle


class MeteredProcessor(ArticleProcessor):
    """An ArticleProcessor that hands every batch of results to an observer
    (the metrics: stage timings, matches by topic)."""

    def __init__(self, config: Config, *, workers: int | None = None,
                 observer: Callable[[Sequence[ProcessedArticle]], None] | None = None) -> None:
        super().__init__(config, workers=workers)
        self.observer = observer

    async def process(self, sources: Sequence[ArticleInput]) -> list[ProcessedArticle]:
        results = await super().process(sources)
        if self.observer is not None:
            self.observer(results)
        return results


@dataclass
class Runtime:
    """The long-lived parts built from a config; closed together."""

    config: Config
    store: Store
    delivery_store: Store  # its own connection: delivery runs in a thread
    pipeline: Pipeline
    processor: ArticleProcessor
    deliverer: Deliverer
    active: int = 0  # jobs using this runtime now (an old one is closed when it reaches 0)
    delivering: bool = False  # a delivery thread is using delivery_store

    @classmethod
    def build(cls, config: Config, *, workers: int | None = None,
              observer: Callable[[Sequence[ProcessedArticle]], None] | None = None) -> Runtime:
        deliverer = Deliverer(config.channels, config.delivery)  # validates channel URLs first
        store = Store(config.database_path())
        try:
            store.sync_feeds((f.url, f.name, f.tags) for f in config.feeds)
            delivery_store = Store(config.database_path())
        except StoreError:
            store.close()
            raise
        processor = MeteredProcessor(config, workers=workers, observer=observer)
        fetcher = Pipeline.make_fetcher(config)
        pipeline = Pipeline(config, store, fetcher, processor)
        return cls(config, store, delivery_store, pipeline, processor, deliverer)

    async def deliver(self, should_stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
        """Deliver every due alert (in batches), in a thread: apprise blocks."""
        total = DeliveryReport()
        self.delivering = True
        try:
            while True:
                report = await asyncio.to_thread(self.deliverer.deliver_due, self.delivery_store)
                total.sent += report.sent
                total.failed += report.failed
                total.dead += report.dead
                total.errors.extend(report.errors)
                if (report.sent + report.failed < self.config.delivery.batch or report.failed
                        or should_stop()):
                    return total
        finally:
            self.delivering = False

    async def aclose(self) -> None:
        await self.pipeline.fetcher.aclose()
        self.processor.close()
        self.store.close()
        if not self.delivering:  # else the thread still uses it; the process is exiting
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


def validate_rules(config: Config) -> None:
    """Compile the config's rules as the workers will (raises ConfigErrors)."""
    Classifier.from_files(config.rule_files(), spacy_model=config.analysis.spacy_model)


def prepare_config(path: os.PathLike[str] | str) -> Config:
    """Load a config and check everything a swap needs: schema, rules, channel URLs."""
    config = load_config(path)  # type: ignore[arg-type]
    # Mask the new secrets first: apprise logs a URL it cannot parse.
    add_secrets(secret_values(config))
    Deliverer(config.channels, config.delivery)
    validate_rules(config)
    return config


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


@dataclass
class CycleTally:
    """Poll outcomes since the last cycle row. A daemon "cycle" closes when every
    enabled feed has been polled once, or after ``window`` seconds with at least
    one poll, so ``newsmon status`` sees a finished cycle as proof of progress."""

    started: datetime = field(default_factory=utcnow)
    opened: float = field(default_factory=time.monotonic)
    feeds_seen: set[str] = field(default_factory=set)
    ok: int = 0
    failed: int = 0
    items_new: int = 0
    matches: int = 0
    alerts: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, outcome: PollOutcome) -> None:
        self.feeds_seen.add(outcome.feed)
        if outcome.not_due:
            return  # considered this round, nothing fetched: not a poll
        self.ok += outcome.ok
        self.failed += not outcome.ok
        self.items_new += outcome.new_items
        self.matches += outcome.matches
        self.alerts += outcome.alerts
        if outcome.error_kind == "database" and outcome.error:
            self.errors.append(outcome.error)

    def complete(self, feeds: frozenset[str], window: float) -> bool:
        if self.ok + self.failed == 0:
            return False
        if len(self.feeds_seen) >= len(feeds) and feeds <= self.feeds_seen:
            return True
        return time.monotonic() - self.opened >= window


class Daemon:
    """``newsmon run``: schedules the jobs and runs until SIGTERM or SIGINT."""

    def __init__(self, config: Config, *, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        self.runtime: Runtime | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()
        self.metrics = Metrics()
        self.progress = ProgressMonitor(config.service.poll_stall_timeout, idle_limit(config))
        self.http: HttpEndpoint | None = None
        self.reloads = 0  # successful reloads, for tests and the log
        self._tasks: set[asyncio.Task] = set()  # in-flight poll and delivery jobs
        self._background: set[asyncio.Task] = set()  # reloads, retirements of old runtimes
        self._tally = CycleTally()
        self._jobs = FeedJobs.of(config)
        self._db_fault: str | None = None
        self._stalled: str | None = None
        self._reload_lock = asyncio.Lock()
        self.clock_guard = ClockGuard(self._clock_stepped_back)

    # --- start and stop ------------------------------------------------------------
    async def start(self, *, paused: bool = False) -> None:
        """Validate, open, schedule, then tell systemd we are ready.

        ``paused``: jobs are scheduled but do not fire (tests drive them by hand).
        """
        config = self.config
        await asyncio.to_thread(validate_rules, config)
        self.runtime = Runtime.build(config, observer=self.metrics.observe_processed)
        store = self.runtime.store
        store.set_meta("daemon_started_at", iso(utcnow()) or "")
        store.set_meta("daemon_pid", str(os.getpid()))
        store.set_meta("daemon_stopped_at", "")
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self.scheduler = scheduler
        now = datetime.now(scheduler.timezone)
        self._schedule_feeds(scheduler, None, self.runtime, now)
        scheduler.add_job(
            self._deliver_job, "interval", seconds=config.delivery.interval, id="deliver",
            next_run_time=now, max_instances=1, coalesce=True, misfire_grace_time=60)
        beat = self.notifier.watchdog_interval or STATUS_INTERVAL
        scheduler.add_job(
            self.heartbeat, "interval", seconds=min(beat, STATUS_INTERVAL), id="heartbeat",
            next_run_time=now, max_instances=1, coalesce=True, misfire_grace_time=None)
        maintenance = config.service.maintenance_interval
        scheduler.add_job(
            self._maintenance_job, "interval", seconds=maintenance, id="maintenance",
            next_run_time=now + timedelta(seconds=min(maintenance, MAINTENANCE_FIRST_DELAY)),
            max_instances=1, coalesce=True, misfire_grace_time=None)
        scheduler.start(paused=paused)
        self.clock_guard.start(asyncio.get_running_loop())
        if config.service.http.enabled:
            self.http = HttpEndpoint(self.health_payload, self.metrics_payload)
            await self.http.start(config.service.http.host, config.service.http.port)
        self.metrics.up.set(1)
        self.notifier.ready(self.status_line())
        log.info("newsmon running: %d feeds, %d channels, database %s",
                 len(enabled_feeds(config)), len(config.channels), config.database_path())

    async def run(self) -> int:
        """Start, serve signals until SIGTERM/SIGINT, stop. Returns the exit code."""
        loop = asyncio.get_running_loop()
        try:
            await self.start()
        except ConfigErrors as exc:
            for error in exc.errors:
                log.error("config: %s", error)
            await self.stop()
            return EXIT_CONFIG
        except (StoreError, OSError) as exc:  # database unusable, HTTP port taken, ...
            log.error("cannot start: %s", exc)
            await self.stop()
            return EXIT_FAILED
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._arm_test_wedge(loop)
        try:
            await self.stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()
        return EXIT_OK

    def request_stop(self, reason: str = "request") -> None:
        if not self.stopping.is_set():
            log.info("%s received: stopping", reason)
            self.notifier.stopping()
            self.stopping.set()

    def _clock_stepped_back(self, seconds: float) -> None:
        """The wall clock stepped back: bring every wall-clock deadline back with it.

        Jobs and stored deadlines were set in the old time; left alone, they would
        wait out the step (no polls, no watchdog pings). Both move earlier by the
        step, so every job keeps the time left it had.
        """
        log.warning("the wall clock stepped back %.0fs: rescheduling jobs and deadlines", seconds)
        step = timedelta(seconds=seconds)
        if self.scheduler is not None and self.scheduler.running:
            for job in self.scheduler.get_jobs():
                if job.next_run_time is not None:
                    job.modify(next_run_time=job.next_run_time - step)
            self.scheduler.wakeup()
        if self.runtime is not None:
            try:
                self.runtime.store.shift_deadlines(seconds)
            except StoreError as exc:
                log.error("could not move stored deadlines after the clock step: %s", exc)

    async def stop(self) -> None:
        """No new work; let in-flight jobs finish within stop_timeout, cancel the rest."""
        self.clock_guard.stop()
        self.notifier.stopping()
        self.stopping.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()  # shutdown() would cancel in-flight jobs at once
        pending = {t for t in self._tasks if not t.done()}
        if pending:
            log.info("waiting up to %.0fs for %d job(s) in flight",
                     self.config.service.stop_timeout, len(pending))
            _, pending = await asyncio.wait(pending, timeout=self.config.service.stop_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for task in list(self._background):
            task.cancel()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.http is not None:
            await self.http.stop()
        if self.runtime is not None:
            self._close_cycle(force=True)
            with contextlib.suppress(StoreError):
                self.runtime.store.set_meta("daemon_stopped_at", iso(utcnow()) or "")
            await self.runtime.aclose()
        self.metrics.up.set(0)
        log.info("stopped")
        self.notifier.close()

    # --- jobs ------------------------------------------------------------------------
    @property
    def feed_jobs(self) -> FeedJobs:
        """The current config's feed jobs (rebuilt when the config is swapped)."""
        if self._jobs.config is not self.config:
            self._jobs = FeedJobs.of(self.config)
        return self._jobs

    async def poll_feed(self, url: str) -> PollOutcome | None:
        """The feed job: poll one feed with the current config. None if skipped."""
        feed = self.feed_jobs.by_url.get(url)
        runtime = self.runtime
        if feed is None or runtime is None or self.stopping.is_set():
            return None
        token = self.progress.poll_started(feed.label)
        runtime.active += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            outcome = await runtime.pipeline.poll(feed)
        except asyncio.CancelledError:
            # Shutting down: what this poll had not stored stays unseen for next time.
            log.warning("poll %s: aborted (shutting down)", feed.label, extra={"feed": feed.label})
            return None
        except Exception:  # a bug in a stage must not kill the daemon
            log.exception("poll %s: internal error", feed.label, extra={"feed": feed.label})
            outcome = PollOutcome(feed=feed.label, ok=False, error_kind="internal",
                                  error="internal error (see the log)")
        finally:
            runtime.active -= 1
            self._tasks.discard(task)  # type: ignore[arg-type]
            self.progress.poll_finished(token)
        self._after_poll(outcome)
        return outcome

    def _after_poll(self, outcome: PollOutcome) -> None:
        """Log, count and tally one finished poll; raise a notice on a database fault."""
        log_poll(outcome)
        self.metrics.observe_poll(
            ok=outcome.ok, not_modified=outcome.not_modified, unchanged=outcome.unchanged,
            not_due=outcome.not_due,
            error_kind=outcome.error_kind, new_items=outcome.new_items, alerts=outcome.alerts,
            seconds=outcome.seconds, finished_at=time.time())
        self._tally.add(outcome)
        if outcome.error_kind == "database":
            log.error("database error during poll of %s: %s", outcome.feed, outcome.error,
                      extra={"feed": outcome.feed})
            self._db_fault = outcome.error
        self._close_cycle()
        self._raise_db_notice()

    def _close_cycle(self, *, force: bool = False) -> None:
        """Write the tally as a finished cycle row when complete (or on the way out)."""
        jobs, tally = self.feed_jobs, self._tally
        if not (tally.complete(jobs.labels, jobs.cycle_window)
                or (force and tally.ok + tally.failed)):
            return
        assert self.runtime is not None
        error = f"database: {tally.errors[-1]}" if tally.errors else None
        try:
            self.runtime.store.record_cycle(
                tally.started, feeds_ok=tally.ok, feeds_failed=tally.failed,
                items_new=tally.items_new, matches=tally.matches, alerts=tally.alerts, error=error)
        except StoreError as exc:
            log.warning("could not record the cycle (will retry): %s", exc)
            return
        self._tally = CycleTally()

    def _raise_db_notice(self) -> None:
        """Queue a health notice for the last database fault, once the database takes it."""
        if self._db_fault is None or self.runtime is None:
            return
        hour = utcnow().strftime("%Y-%m-%dT%H")
        try:
            self.runtime.store.enqueue_notice(
                f"database-{hour}", "database error",
                f"newsmon could not write its database: {self._db_fault}\n"
                "The poll was rolled back and will be retried; nothing was marked seen.",
                admin_channels(self.config.channels))
        except StoreError as exc:
            log.debug("health notice not queued yet: %s", exc)
            return
        self._db_fault = None

    async def _deliver_job(self) -> None:
        runtime = self.runtime
        if runtime is None or self.stopping.is_set():
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        runtime.active += 1
        started = time.monotonic()
        try:
            report = await runtime.deliver(should_stop=self.stopping.is_set)
        except StoreError as exc:
            log.error("delivery: %s", exc)
            self._db_fault = str(exc)
            return
        finally:
            runtime.active -= 1
            self._tasks.discard(task)  # type: ignore[arg-type]
        self.metrics.observe_delivery(sent=report.sent, failed=report.failed, dead=report.dead,
                                      seconds=time.monotonic() - started)

    async def heartbeat(self) -> None:
        """Feed the watchdog and refresh STATUS=, only while polls make progress."""
        self._raise_db_notice()
        problem = self.progress.problem()
        if problem is not None:
            kind = problem.split(" for ")[0]  # without the growing duration: log once
            if self._stalled != kind:
                log.error("watchdog not fed: %s", problem)
            self._stalled = kind
            self.notifier.status(f"stalled: {problem}")
            return
        if self._stalled is not None:
            log.info("progress again: feeding the watchdog")
            self._stalled = None
        self.notifier.send("WATCHDOG=1", f"STATUS={self.status_line()}")

    async def _maintenance_job(self) -> None:
        """Retention and optimisation in a thread, on its own connection."""
        if self.stopping.is_set():
            return
        idle = self.progress.inflight == 0
        path, settings = self.config.database_path(), self.config.service

        def work() -> str:
            store = Store(path)
            try:
                return maintain(store, settings, idle=idle).summary()
            finally:
                store.close()

        try:
            summary = await asyncio.to_thread(work)
        except StoreError as exc:
            log.warning("maintenance skipped: %s", exc)
            return
        log.info("maintenance: %s", summary)

    # --- status ----------------------------------------------------------------------
    def status_line(self) -> str:
        """One line for systemctl status: feeds, last cycle, pending alerts."""
        feeds = len(self.feed_jobs.by_url)
        if self.runtime is None:
            return f"{feeds} feeds, starting"
        try:
            store = self.runtime.store
            failing = sum(1 for f in store.feed_health() if f["consecutive_failures"])
            pending = store.alert_counts().get("pending", 0)
            cycle = store.last_cycle()
        except Exception as exc:  # StoreError, or a sqlite error outside its wrappers
            return f"{feeds} feeds; database error: {exc}"
        last = cycle["finished_at"] if cycle else "none yet"
        line = f"{feeds} feeds ({failing} failing), last cycle {last}, {pending} alerts pending"
        if self._db_fault:
            line += "; database error"
        return line

    def health_payload(self) -> tuple[bool, dict]:
        """``/healthz``: the database's verdict plus the loop's own progress."""
        assert self.runtime is not None
        try:
            report = evaluate_health(self.runtime.store, self.config)
        except Exception as exc:  # the database is unreadable: that is the answer
            return False, {"healthy": False, "problems": [f"database: {exc}"]}
        payload = report.to_dict()
        problem = self.progress.problem()
        if problem:
            payload["problems"].append(f"scheduler: {problem}")
        payload["healthy"] = not payload["problems"]
        payload["polls_in_flight"] = self.progress.inflight
        return payload["healthy"], payload

    def metrics_payload(self) -> bytes:
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.metrics.set_alert_counts(self.runtime.store.alert_counts())
        return self.metrics.render()

    # --- scheduling and reload -----------------------------------------------------
    def _feed_job_id(self, url: str) -> str:
        return f"feed:{url}"

    def _schedule_feeds(self, scheduler: AsyncIOScheduler, old_runtime: Runtime | None,
                        runtime: Runtime, now: datetime) -> None:
        """Make the feed jobs match ``runtime``'s config: remove, add, re-time.

        A changed interval keeps the job's next run time (or brings it forward to
        now + the new interval), so a reload never causes a burst of polls.
        """
        old = old_runtime.config if old_runtime else None
        new = runtime.config
        before = enabled_feeds(old) if old else {}
        after = enabled_feeds(new)
        for url in before.keys() - after.keys():
            with contextlib.suppress(JobLookupError):
                scheduler.remove_job(self._feed_job_id(url))
            log.info("feed %s removed: polling stops", before[url].label,
                     extra={"feed": before[url].label})
        added = 0
        for url, feed in after.items():
            interval = job_interval(runtime, feed)
            trigger = IntervalTrigger(seconds=interval, jitter=min(interval * 0.1, 60))
            job = scheduler.get_job(self._feed_job_id(url))
            if job is None:
                # Spread first polls over a few seconds instead of one burst.
                first = now + timedelta(seconds=min(added * 0.5, 30))
                added += 1
                scheduler.add_job(
                    self.poll_feed, trigger, id=self._feed_job_id(url), args=[url],
                    next_run_time=first, max_instances=1, coalesce=True,
                    misfire_grace_time=int(max(interval, 60)), replace_existing=True)
                if old is not None:
                    log.info("feed %s added", feed.label, extra={"feed": feed.label})
            elif old_runtime is not None and interval != job_interval(old_runtime, before[url]):
                next_run = _next_run(job, interval, now)
                job.modify(trigger=trigger, next_run_time=next_run,
                           misfire_grace_time=int(max(interval, 60)))
                log.info("feed %s: interval now %.0fs, next poll %s", feed.label, interval,
                         next_run.isoformat(timespec="seconds"), extra={"feed": feed.label})

    def _retime(self, job_id: str, seconds: float, now: datetime) -> None:
        """Change an interval job's period, keeping (or bringing forward) its next run."""
        assert self.scheduler is not None
        job = self.scheduler.get_job(job_id)
        if job is None:
            return
        job.modify(trigger=IntervalTrigger(seconds=seconds), next_run_time=_next_run(job, seconds, now))

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> bool:
        """SIGHUP: build and check the new config fully, then swap; else keep the old."""
        async with self._reload_lock:
            if self.stopping.is_set() or self.runtime is None or self.scheduler is None:
                return False
            path = self.config.source
            log.info("SIGHUP: reloading %s", path)
            self.notifier.reloading()
            try:
                if path is None:
                    raise ConfigErrors([])
                new = await asyncio.to_thread(prepare_config, path)
                runtime = Runtime.build(new, observer=self.metrics.observe_processed)
            except ConfigErrors as exc:
                for error in exc.errors:
                    log.error("reload rejected, keeping the running config: %s", error)
                self.notifier.ready(self.status_line())
                return False
            except (ChannelError, StoreError, OSError, ValueError) as exc:
                log.error("reload rejected, keeping the running config: %s", exc)
                self.notifier.ready(self.status_line())
                return False
            except Exception:  # e.g. a spaCy model failing to load: still keep running
                log.exception("reload rejected, keeping the running config")
                self.notifier.ready(self.status_line())
                return False
            old, old_runtime = self.config, self.runtime
            self.config, self.runtime = new, runtime
            now = datetime.now(self.scheduler.timezone)
            self._schedule_feeds(self.scheduler, old_runtime, runtime, now)
            if new.delivery.interval != old.delivery.interval:
                self._retime("deliver", new.delivery.interval, now)
            if new.service.maintenance_interval != old.service.maintenance_interval:
                self._retime("maintenance", new.service.maintenance_interval, now)
            self.progress.stall_timeout = new.service.poll_stall_timeout
            self.progress.idle_limit = idle_limit(new)
            self.progress.reset_idle()
            self._retire(old_runtime)
            self.reloads += 1
            log.info("reloaded: %d feeds, %d channels", len(enabled_feeds(new)), len(new.channels))
            self.notifier.ready(self.status_line())
            return True

    def _retire(self, runtime: Runtime) -> None:
        """Close a replaced runtime once the jobs still using it are done."""

        async def wait_and_close() -> None:
            try:
                deadline = time.monotonic() + self.config.service.poll_stall_timeout
                while runtime.active and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
            finally:
                await runtime.aclose()

        task = asyncio.get_running_loop().create_task(wait_and_close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- test-only ---------------------------------------------------------------------
    def _arm_test_wedge(self, loop: asyncio.AbstractEventLoop) -> None:
        """``NEWSMON_TEST_WEDGE_AFTER=seconds`` (tests only): block the event loop
        thread for good after that long, as a deadlocked stage would. Proves the
        watchdog is fed by the scheduler, not by a thread that outlives it."""
        raw = os.environ.get(TEST_WEDGE_ENV)
        if not raw:
            return
        log.warning("%s is set: this daemon will wedge itself (tests only)", TEST_WEDGE_ENV)

        def wedge() -> None:
            log.warning("test wedge: blocking the event loop")
            time.sleep(3600)

        loop.call_later(float(raw), wedge)


def _next_run(job: Job, seconds: float, now: datetime) -> datetime:
    """A re-timed job's next run: as planned, but no later than one new period from now
    (so a shorter period takes effect at once and a longer one causes no burst)."""
    latest = now + timedelta(seconds=seconds)
    return min(job.next_run_time, latest) if job.next_run_time else latest
