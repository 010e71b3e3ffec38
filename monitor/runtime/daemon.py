"""``newsmon run``: the daemon's lifecycle, signals and systemd, and what its jobs do.

Jobs only wire stages together (``Pipeline.poll``, ``Deliverer.deliver_due``); when
they run is ``runtime/scheduling.py`` (a job per feed, the heartbeat, the upkeep),
and the sending loop is ``runtime/delivery_loop.py``. It runs first at start-up, so
alerts left pending by a crash go out before anything new.

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
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor import notices
from monitor.config import Config
from monitor.delivery.routing import admin_channels
from monitor.errors import NewsmonError, StorageError
from monitor.records import ChannelHealthRow, StatusFigures, iso, utcnow
from monitor.runtime.assembly import (
    FeedJobs,
    Runtime,
    cap_changed_intervals,
    enabled_feeds,
    idle_limit,
    prepare_config,
    validate_rules,
)
from monitor.runtime.clock import ClockGuard
from monitor.runtime.cycles import CycleTally, PollOutcome
from monitor.runtime.delivery_loop import DeliveryLoop
from monitor.runtime.lock import DaemonLock, DatabaseLocked
from monitor.runtime.metrics import HttpEndpoint, Metrics
from monitor.runtime.pg_lock import PgDaemonLock
from monitor.runtime.pipeline import log_poll
from monitor.runtime.retention import maintain
from monitor.runtime.scheduling import STATUS_INTERVAL, retime, schedule_feeds, schedule_upkeep
from monitor.runtime.status import evaluate as evaluate_health
from monitor.runtime.systemd import Notifier, ProgressMonitor
from monitor.storage import StoreError, open_storage
from monitor.storage.db import check_database
from monitor.yamlfile import ConfigErrors

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
Role = Literal["full", "delivery", "poll"]  # run, run --delivery-only, run --poll-only
HEALTH_READ_S = 3.0  # /healthz waits this long for the database's figures


class Daemon:
    """``newsmon run``: schedules the jobs and runs until SIGTERM or SIGINT."""

    def __init__(self, config: Config, *, notifier: Notifier | None = None,
                 init: bool = False, role: Role = "full") -> None:
        self.config = config
        self.role: Role = role  # "delivery": no feed jobs; "poll": no delivery
        self._lock: DaemonLock | PgDaemonLock | None = None  # one full daemon per database
        self.delivery = DeliveryLoop(self)
        self._unrouted_logged: set[str] = set()
        self._channels_cache: list[ChannelHealthRow] = []
        self.init = init  # ``newsmon run --init``: accept an empty database file (check_database)
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        self.runtime: Runtime | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.stopping = asyncio.Event()
        self.metrics = Metrics()
        self.progress = ProgressMonitor(config.service.poll_stall_timeout,
                                        idle_limit(config) if role != "delivery" else None)
        self.http: HttpEndpoint | None = None
        self.reloads = 0  # successful reloads, for tests and the log
        self.in_flight: set[asyncio.Task] = set()  # poll and delivery jobs running now
        self._background: set[asyncio.Task] = set()  # reloads, retirements of old runtimes
        self._tally = self._new_tally()
        self._jobs = FeedJobs.of(config)
        self._db_fault: str | None = None
        self._stalled: str | None = None
        # Read on the database thread by each heartbeat, served from here: STATUS=,
        # /healthz and /metrics never wait on the database from the loop.
        self._status_cache: str | None = None
        self._figures_cache: tuple[StatusFigures, dict[str, int]] | None = None
        self._refreshing: asyncio.Task | None = None
        self._published_problem: str | None = ""
        self._published_storage: str | None = None
        self._reload_lock = asyncio.Lock()
        self.clock_guard = ClockGuard(self._clock_stepped_back)

    # --- start and stop ------------------------------------------------------------
    async def start(self, *, paused: bool = False) -> None:
        """Validate, open, schedule, then tell systemd we are ready.

        ``paused``: jobs are scheduled but do not fire (tests drive them by hand).
        """
        config = self.config
        unrouted = await asyncio.to_thread(validate_rules, config)
        # One daemon per database, helpers cooperate via claims: an flock on a SQLite file,
        # an exclusive session advisory lock on PostgreSQL, which the cluster processes
        # hold shared (runtime/pg_lock.py; open_storage refuses a foreign database there).
        if self.role == "full" and not config.is_postgres:
            self._lock = DaemonLock.acquire(config.database_path())
        elif self.role == "full":
            self._lock = await asyncio.to_thread(
                PgDaemonLock.acquire, str(config.database), role="run", exclusive=True)
        if not config.is_postgres:
            # Refuse an emptied, foreign or corrupt file before anything writes to it.
            await asyncio.to_thread(check_database, config.database_path(), init=self.init)
        self.runtime = Runtime.build(config, observer=self.metrics.observe_processed)
        ops, db = self.runtime.storage.ops, self.runtime.pipeline.db
        if self.role == "full":  # a helper leaves the daemon's facts alone
            await db.call(ops.set_meta, "daemon_started_at", iso(utcnow()) or "")
            await db.call(ops.set_meta, "daemon_pid", str(os.getpid()))
            await db.call(ops.set_meta, "daemon_stopped_at", "")
            await db.call(ops.set_meta, "daemon_problem", "")
        await self._note_unrouted(unrouted)
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self.scheduler = scheduler
        now = datetime.now(scheduler.timezone)
        if self.role != "delivery":
            schedule_feeds(scheduler, self.poll_feed, None, self.runtime, now)
            await self._apply_intervals(self.runtime)
        schedule_upkeep(scheduler, now, heartbeat=self.heartbeat,
                        beat=self.notifier.watchdog_interval or STATUS_INTERVAL,
                        maintenance=self._maintenance_job,
                        maintenance_interval=config.service.maintenance_interval)
        scheduler.start(paused=paused)
        if self.role != "poll" and not paused:
            self.delivery.start()
        self.clock_guard.start(asyncio.get_running_loop())
        if config.service.http.enabled:
            self.http = HttpEndpoint(self.health_payload, self.metrics_payload)
            await self.http.start(config.service.http.host, config.service.http.port)
        self.metrics.up.set(1)
        self.notifier.ready(self.status_line())
        helper = {"full": "", "delivery": " (delivery-only helper)",
                  "poll": " (poll-only helper)"}[self.role]
        log.info("newsmon running%s: %d feeds, %d channels, database %s", helper,
                 len(enabled_feeds(config)) if self.role != "delivery" else 0,
                 len(config.channels), config.database_label())

    async def _note_unrouted(self, topics: Sequence[str]) -> None:
        """Log once per topic that its matches reach no channel; keep the list for status."""
        for topic in topics:
            if topic not in self._unrouted_logged:
                self._unrouted_logged.add(topic)
                log.warning("topic %s routes to no channel (see the channels' topics: and"
                            " min_severity): its matches are stored but not alerted", topic)
        if self.runtime is not None:
            with contextlib.suppress(StoreError):
                await self.runtime.pipeline.db.call(
                    self.runtime.storage.ops.set_meta, "unrouted_topics", ",".join(topics))

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
        except (StorageError, OSError, DatabaseLocked) as exc:  # database unusable or held
            log.error("cannot start: %s", exc)
            await self.stop()
            return EXIT_FAILED
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
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
            runtime = self.runtime

            async def shift() -> None:
                try:
                    await runtime.pipeline.db.call(runtime.storage.ops.shift_deadlines, seconds)
                except StoreError as exc:
                    log.error("could not move stored deadlines after the clock step: %s", exc)

            self._in_background(shift())

    async def stop(self) -> None:
        """No new work; let in-flight jobs finish within stop_timeout, cancel the rest."""
        self.clock_guard.stop()
        self.notifier.stopping()
        self.stopping.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()  # shutdown() would cancel in-flight jobs at once
        pending = {t for t in self.in_flight if not t.done()}
        # The jobs get the stop deadline less a moment for closing down, so the
        # process exits within service.stop_timeout (what systemd waits for).
        stop_timeout = self.config.service.stop_timeout
        budget = max(stop_timeout - 1.0, stop_timeout * 0.6)
        if pending:
            log.info("waiting up to %.0fs for %d job(s) in flight", budget, len(pending))
            _, pending = await asyncio.wait(pending, timeout=budget)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=min(1.0, stop_timeout * 0.2))
        await self.delivery.stop()
        for task in list(self._background):
            task.cancel()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.http is not None:
            await self.http.stop()
        if self.runtime is not None:
            await self._close_cycle(force=True)
            with contextlib.suppress(StoreError):
                await self.runtime.pipeline.db.call(
                    self.runtime.storage.ops.set_meta, "daemon_stopped_at", iso(utcnow()) or "")
            await self.runtime.aclose()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
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
            self.in_flight.add(task)
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
            self.in_flight.discard(task)
            self.progress.poll_finished(token)
        await self._after_poll(outcome)
        return outcome

    async def _after_poll(self, outcome: PollOutcome) -> None:
        """Log, count and tally one finished poll; raise a notice on a database fault."""
        log_poll(outcome)
        self.metrics.observe_poll(
            ok=outcome.ok, not_modified=outcome.not_modified, unchanged=outcome.unchanged,
            not_due=outcome.not_due,
            error_kind=outcome.error_kind, new_items=outcome.new_items, alerts=outcome.alerts,
            seconds=outcome.seconds, finished_at=time.time())
        self._tally.add(outcome)
        # The watchdog is fed only while items that arrive get processed: a poll whose
        # items all failed (or that failed inside the workers) counts against it.
        processed = max(outcome.new_items - outcome.failed_items, 0)
        failed = outcome.failed_items + (1 if outcome.error_kind == "internal" else 0)
        self.progress.items_done(processed=processed, failed=failed,
                                 reason=outcome.error if outcome.error_kind == "internal" else None)
        if outcome.error_kind == "database":
            log.error("database error during poll of %s: %s", outcome.feed, outcome.error,
                      extra={"feed": outcome.feed})
            self.database_fault(outcome.error)
        await self._close_cycle()
        await self._raise_db_notice()

    @staticmethod
    def _new_tally() -> CycleTally:
        return CycleTally(started=utcnow(), opened=time.monotonic())

    async def _close_cycle(self, *, force: bool = False) -> None:
        """Write the tally as a finished cycle row when complete (or on the way out)."""
        jobs, tally = self.feed_jobs, self._tally
        if not (tally.complete(jobs.labels, jobs.cycle_window, time.monotonic())
                or (force and tally.polls)):
            return
        assert self.runtime is not None
        figures = tally.figures()
        try:
            await self.runtime.pipeline.db.call(
                self.runtime.storage.ops.record_cycle, tally.started, feeds_ok=figures.feeds_ok,
                feeds_failed=figures.feeds_failed,
                items_new=figures.items_new, matches=figures.matches, alerts=figures.alerts,
                error=figures.error)
        except StoreError as exc:
            log.warning("could not record the cycle (will retry): %s", exc)
            return
        self._tally = self._new_tally()

    def database_fault(self, error: str | None) -> None:
        """A job met a database fault: a health notice is raised once the database takes it."""
        self._db_fault = error

    async def _raise_db_notice(self) -> None:
        """Queue a health notice for the last database fault, once the database takes it."""
        if self._db_fault is None or self.runtime is None:
            return
        notice = notices.database_fault(self._db_fault, now=utcnow())
        try:
            await self.runtime.pipeline.db.call(
                self.runtime.storage.outbox.enqueue_notice, notice.key, notice.title, notice.body,
                admin_channels(self.config.channels), severity=notice.severity)
        except StoreError as exc:
            log.debug("health notice not queued yet: %s", exc)
            return
        self._db_fault = None

    async def heartbeat(self) -> None:
        """Feed the watchdog and refresh STATUS=, only while polls make progress.

        Nothing here waits on the database: the notice, the status line and the
        health figures are refreshed on the database thread in the background.
        """
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = self._in_background(self._refresh_from_db())
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
        line = self._cached_status_line()
        storage = self.runtime.pipeline.db.health.problem() if self.runtime is not None else None
        self.notifier.send("WATCHDOG=1", f"STATUS={line}" + (f"; {storage}" if storage else ""))

    def _cached_status_line(self) -> str:
        """The last status line read on the database thread (while jobs may be using the
        connection there, the loop does not read it itself)."""
        return self._status_cache or f"{len(self.feed_jobs.by_url)} feeds"

    def _in_background(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _refresh_from_db(self) -> None:
        """On the database thread: the notice, status line, health figures; and the
        daemon's own problem written for ``newsmon status`` (best effort)."""
        runtime = self.runtime
        if runtime is None:
            return
        await self._raise_db_notice()
        try:
            self._status_cache = await runtime.pipeline.db.call(self.status_line)
            figures = await runtime.pipeline.db.call(runtime.storage.views.status_figures)
            counts = await runtime.pipeline.db.call(runtime.storage.outbox.counts)
            self._channels_cache = await runtime.pipeline.db.call(
                runtime.storage.outbox.channel_health)
            self._figures_cache = (figures, counts)
            problem = "; ".join(self.daemon_problems())
            if problem != self._published_problem:
                await runtime.pipeline.db.call(runtime.storage.ops.set_meta, "daemon_problem",
                                               problem)
                self._published_problem = problem
            storage = runtime.pipeline.db.health.summary()
            if storage != self._published_storage:
                await runtime.pipeline.db.call(runtime.storage.ops.set_meta, "daemon_storage",
                                               storage)
                self._published_storage = storage
        except Exception as exc:  # StoreError, or sqlite outside its wrappers: shown as is
            self._status_cache = f"{len(self.feed_jobs.by_url)} feeds; database error: {exc}"

    def daemon_problems(self) -> list[str]:
        """What the running daemon knows is wrong that its database cannot show:
        stalled polls or processing, repeated storage errors, workers that cannot start."""
        problems = []
        progress = self.progress.problem()
        if progress:
            problems.append(f"scheduler: {progress}")
        if self.runtime is not None:
            storage = self.runtime.pipeline.db.health.problem()
            if storage:
                problems.append(storage)
            start_error = self.runtime.processor.health.start_error
            if start_error:
                problems.append(f"workers: cannot start: {start_error}")
        return problems

    async def _maintenance_job(self) -> None:
        """Retention and optimisation in a thread, on its own connection."""
        if self.stopping.is_set():
            return
        idle = self.progress.inflight == 0
        path, settings = self.config.database_target(), self.config.service

        def work() -> str:
            storage = open_storage(path)
            try:
                return maintain(storage.ops, settings, idle=idle).summary()
            finally:
                storage.close()

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
            storage = self.runtime.storage
            failing = sum(1 for f in storage.views.feed_health() if f.consecutive_failures)
            pending = storage.outbox.counts().get("pending", 0)
            cycle = storage.ops.last_cycle()
        except Exception as exc:  # StoreError, or a sqlite error outside its wrappers
            return f"{feeds} feeds; database error: {exc}"
        last = iso(cycle.finished_at) if cycle else "none yet"
        line = f"{feeds} feeds ({failing} failing), last cycle {last}, {pending} alerts pending"
        if self._db_fault:
            line += "; database error"
        return line

    async def health_payload(self) -> tuple[bool, dict]:
        """``/healthz``: the database's verdict plus the loop's own progress."""
        assert self.runtime is not None
        runtime = self.runtime
        try:
            # On the database thread; a database that does not answer (a lock held by
            # another process, a stalled disk) is itself the answer, after a short wait.
            figures = await asyncio.wait_for(
                runtime.pipeline.db.call(runtime.storage.views.status_figures), HEALTH_READ_S)
        except TimeoutError:
            problem = f"database: no answer in {HEALTH_READ_S:g}s (locked by another process?)"
            if self._figures_cache is None:
                return False, {"healthy": False, "problems": [problem]}
            figures = self._figures_cache[0]
            extra = [problem]
        except Exception as exc:  # the database is unreadable: that is the answer
            return False, {"healthy": False, "problems": [f"database: {exc}"]}
        else:
            extra = []
        report = evaluate_health(figures, self.config, channels=self._channels_cache)
        payload = report.to_dict()
        # The daemon's own problems replace the copy it wrote to the database.
        payload["problems"] = [p for p in payload["problems"] if not p.startswith("daemon: ")]
        payload["problems"].extend(extra + self.daemon_problems())
        payload["healthy"] = not payload["problems"]
        payload["polls_in_flight"] = self.progress.inflight
        payload["storage"] = self.runtime.pipeline.db.health.to_dict()
        health = self.runtime.processor.health
        payload["workers"] = {"workers": health.workers, "restarts": health.restarts,
                              "deadline_kills": health.deadline_kills,
                              "last_loss": health.last_loss, "start_error": health.start_error}
        return payload["healthy"], payload

    def metrics_payload(self) -> bytes:
        if self._figures_cache is not None:
            self.metrics.set_alert_counts(self._figures_cache[1])
            self.metrics.set_channel_health(self._channels_cache)
        return self.metrics.render()

    # --- reload ----------------------------------------------------------------------
    async def _apply_intervals(self, runtime: Runtime) -> None:
        """A changed feed ``interval:`` applies at once (``cap_changed_intervals``)."""
        try:
            moved = await runtime.pipeline.db.call(cap_changed_intervals, runtime.storage,
                                                   runtime.config)
        except StoreError as exc:
            log.warning("could not apply changed feed intervals now: %s", exc)
            return
        for label, when in moved:
            log.info("feed %s: its interval changed, next poll brought forward to %s", label,
                     when.isoformat(timespec="seconds"), extra={"feed": label})

    def _on_sighup(self) -> None:
        self._in_background(self.reload())

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
                self.notifier.ready(self._cached_status_line())
                return False
            except (NewsmonError, OSError, ValueError) as exc:  # ValueError: pydantic
                log.error("reload rejected, keeping the running config: %s", exc)
                self.notifier.ready(self._cached_status_line())
                return False
            except Exception:  # e.g. a spaCy model failing to load: still keep running
                log.exception("reload rejected, keeping the running config")
                self.notifier.ready(self._cached_status_line())
                return False
            old, old_runtime = self.config, self.runtime
            self.config, self.runtime = new, runtime
            now = datetime.now(self.scheduler.timezone)
            if self.role != "delivery":
                schedule_feeds(self.scheduler, self.poll_feed, old_runtime, runtime, now)
                await self._apply_intervals(runtime)
            if new.service.maintenance_interval != old.service.maintenance_interval:
                retime(self.scheduler, "maintenance", new.service.maintenance_interval, now)
            self.progress.stall_timeout = new.service.poll_stall_timeout
            self.progress.idle_limit = idle_limit(new)
            self.progress.reset_idle()
            self._retire(old_runtime)
            self.reloads += 1
            log.info("reloaded: %d feeds, %d channels", len(enabled_feeds(new)), len(new.channels))
            self.notifier.ready(self._cached_status_line())
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

        self._in_background(wait_and_close())
