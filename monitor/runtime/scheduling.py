"""The daemon's jobs on APScheduler: a job per enabled feed, the heartbeat and the upkeep.

Every job runs with ``max_instances=1`` and coalesced misfires, so a slow feed or a
clock jump never piles up runs. What a job does is the daemon's (``runtime/daemon.py``);
here is only when it runs: the feed jobs made to match a config (removed, added with
their first polls spread out, re-timed), and a period changed without a burst.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.runtime.assembly import Runtime, enabled_feeds, job_interval

__all__ = ["MAINTENANCE_FIRST_DELAY", "STATUS_INTERVAL", "feed_job_id", "next_run", "retime",
           "schedule_feeds", "schedule_upkeep"]

log = logging.getLogger(__name__)

STATUS_INTERVAL = 15.0  # seconds between STATUS= updates when there is no watchdog
MAINTENANCE_FIRST_DELAY = 300.0  # the first upkeep waits for start-up polls to settle


def feed_job_id(url: str) -> str:
    return f"feed:{url}"


def schedule_upkeep(scheduler: AsyncIOScheduler, now: datetime, *,
                    heartbeat: Callable[[], Awaitable[Any]], beat: float,
                    maintenance: Callable[[], Awaitable[Any]], maintenance_interval: float) -> None:
    """The heartbeat (at once, then every ``beat`` seconds, at most ``STATUS_INTERVAL``)
    and the upkeep job (first after start-up polls have settled)."""
    scheduler.add_job(
        heartbeat, "interval", seconds=min(beat, STATUS_INTERVAL), id="heartbeat",
        next_run_time=now, max_instances=1, coalesce=True, misfire_grace_time=None)
    scheduler.add_job(
        maintenance, "interval", seconds=maintenance_interval, id="maintenance",
        next_run_time=now + timedelta(seconds=min(maintenance_interval, MAINTENANCE_FIRST_DELAY)),
        max_instances=1, coalesce=True, misfire_grace_time=None)


def schedule_feeds(scheduler: AsyncIOScheduler, poll: Callable[[str], Awaitable[Any]],
                   old_runtime: Runtime | None, runtime: Runtime, now: datetime) -> None:
    """Make the feed jobs (each ``poll(url)``) match ``runtime``'s config: remove, add, re-time.

    A changed interval keeps the job's next run time (or brings it forward to
    now + the new interval), so a reload never causes a burst of polls.
    """
    old = old_runtime.config if old_runtime else None
    before = enabled_feeds(old) if old else {}
    after = enabled_feeds(runtime.config)
    for url in before.keys() - after.keys():
        with contextlib.suppress(JobLookupError):
            scheduler.remove_job(feed_job_id(url))
        log.info("feed %s removed: polling stops", before[url].label,
                 extra={"feed": before[url].label})
    added = 0
    for url, feed in after.items():
        interval = job_interval(runtime, feed)
        trigger = IntervalTrigger(seconds=interval, jitter=min(interval * 0.1, 60))
        job = scheduler.get_job(feed_job_id(url))
        if job is None:
            # Spread first polls over a few seconds instead of one burst.
            first = now + timedelta(seconds=min(added * 0.5, 30))
            added += 1
            scheduler.add_job(
                poll, trigger, id=feed_job_id(url), args=[url],
                next_run_time=first, max_instances=1, coalesce=True,
                misfire_grace_time=int(max(interval, 60)), replace_existing=True)
            if old is not None:
                log.info("feed %s added", feed.label, extra={"feed": feed.label})
        elif old_runtime is not None and interval != job_interval(old_runtime, before[url]):
            when = next_run(job, interval, now)
            job.modify(trigger=trigger, next_run_time=when,
                       misfire_grace_time=int(max(interval, 60)))
            log.info("feed %s: interval now %.0fs, next poll %s", feed.label, interval,
                     when.isoformat(timespec="seconds"), extra={"feed": feed.label})


def retime(scheduler: AsyncIOScheduler, job_id: str, seconds: float, now: datetime) -> None:
    """Change an interval job's period, keeping (or bringing forward) its next run."""
    job = scheduler.get_job(job_id)
    if job is None:
        return
    job.modify(trigger=IntervalTrigger(seconds=seconds), next_run_time=next_run(job, seconds, now))


def next_run(job: Job, seconds: float, now: datetime) -> datetime:
    """A re-timed job's next run: as planned, but no later than one new period from now
    (so a shorter period takes effect at once and a longer one causes no burst)."""
    latest = now + timedelta(seconds=seconds)
    return min(job.next_run_time, latest) if job.next_run_time else latest
