"""SIGTERM during a slow fetch, and SIGHUP reloads (broken config kept out, fixed applied)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.runtime.assembly import job_interval
from monitor.runtime.daemon import Daemon
from monitor.runtime.systemd import Notifier
from tests.helpers.hostile import HostileServer
from tests.helpers.servers import Site, rss
from tests.helpers.service import DaemonProcess, NotifySocket, wait_for, write_config


@pytest.mark.timeout(60)
def test_sigterm_during_a_dripping_fetch_exits_fast_and_leaves_the_item_unseen(
    tmp_path: Path,
) -> None:
    with HostileServer() as hostile, Site() as site:
        slow_page = hostile.url("/slow-body?interval=1&length=100000")
        site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss([{
            "title": "Ceasefire talks resume", "link": slow_page, "guid": "slow-1",
            "description": "Negotiators meet again."}]))
        notify = NotifySocket()
        config = write_config(tmp_path, [site.url("/feed.xml")], interval="10m")
        daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify.name})
        try:
            wait_for(lambda: "/slow-body" in hostile.paths(), 30, "the page fetch to start")
            time.sleep(1)  # a byte or so has dripped: the fetch is mid-body
            sent = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(10)
            elapsed = time.monotonic() - sent
        finally:
            daemon.stop()
            notify.close()
    assert code == 0, daemon.log()
    assert elapsed < 10
    assert notify.fields("STOPPING")
    assert "aborted (shutting down)" in daemon.log()
    db = sqlite3.connect(tmp_path / "state" / "test.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0  # not marked seen
    assert db.execute("SELECT COUNT(*) FROM articles").fetchone()[0] == 0


@pytest.mark.timeout(90)
def test_sighup_keeps_the_old_config_on_errors_and_applies_a_fixed_one(tmp_path: Path) -> None:
    feed = rss([{"title": "Weather", "guid": "w1", "description": "Sunny."}])
    with Site() as site:
        for path in ("/one.xml", "/two.xml"):
            site.routes[path] = (200, {"Content-Type": "application/rss+xml"}, feed)
        one, two = site.url("/one.xml"), site.url("/two.xml")
        config = write_config(tmp_path, [one], interval="1s")
        daemon = DaemonProcess(config, env={"BAD_URL": "nosuchscheme://topsecret-token"})

        def polls(path: str) -> int:
            return sum(r.path == path for r in site.requests)

        try:
            daemon.wait_log("newsmon running")
            wait_for(lambda: polls("/one.xml") >= 2, 20, "polls of one.xml")

            # 1. Not even valid YAML.
            config.write_text("feeds: [unclosed\n", encoding="utf-8")
            daemon.signal(signal.SIGHUP)
            daemon.wait_log("reload rejected")
            # 2. Valid YAML, but a channel URL (a secret from the environment) apprise
            #    cannot use.
            write_config(tmp_path, [two], interval="1s",
                         channels=[{"name": "bad", "url": "${BAD_URL}"}])
            daemon.signal(signal.SIGHUP)
            wait_for(lambda: daemon.log().count("reload rejected") >= 2, 20, "second rejection")
            assert "apprise cannot use the URL nosuchscheme://****" in daemon.log()
            before = polls("/one.xml")
            wait_for(lambda: polls("/one.xml") >= before + 2, 20, "polls on the old config")
            assert daemon.proc.poll() is None and polls("/two.xml") == 0

            # 3. Fixed: feed two replaces feed one.
            write_config(tmp_path, [two], interval="1s")
            daemon.signal(signal.SIGHUP)
            daemon.wait_log("reloaded: 1 feeds")
            wait_for(lambda: polls("/two.xml") >= 2, 20, "polls of two.xml")
            stopped_at = polls("/one.xml")
            time.sleep(2.5)
            assert polls("/one.xml") <= stopped_at + 1  # at most one poll already in flight
            assert daemon.proc.poll() is None
            daemon.signal(signal.SIGTERM)
            assert daemon.proc.wait(10) == 0
        finally:
            daemon.stop()
    log = daemon.log()
    assert "feed " + one + " removed: polling stops" in log
    assert "newsmon.yaml:2:1: invalid YAML" in log  # the error names file and line
    assert "topsecret-token" not in log


@pytest.mark.timeout(60)
def test_reload_reschedules_a_changed_interval_without_a_burst(tmp_path: Path) -> None:
    urls = ["http://127.0.0.1:9/a.xml", "http://127.0.0.1:9/b.xml"]

    def rewrite(min_interval: str, interval: str) -> None:
        write_config(tmp_path, urls, interval=interval, fetch={"min_interval": min_interval})

    async def scenario() -> None:
        rewrite("5m", "10m")
        daemon = Daemon(load_config(tmp_path / "newsmon.yaml"), notifier=Notifier(None))
        await daemon.start(paused=True)
        try:
            assert daemon.scheduler is not None and daemon.runtime is not None
            tz = daemon.scheduler.timezone
            jobs = [f"feed:{u}" for u in urls]
            # Pretend both polled a moment ago: next runs a few minutes away.
            soon = datetime.now(tz) + timedelta(minutes=4)
            for job in jobs:
                daemon.scheduler.get_job(job).modify(next_run_time=soon)
            feed = daemon.config.feeds[0]
            before = job_interval(daemon.runtime, feed)

            # Longer cadence: the planned polls stay where they were.
            rewrite("20m", "30m")
            assert await daemon.reload()
            longer = job_interval(daemon.runtime, daemon.config.feeds[0])
            assert longer > before
            for job in jobs:
                assert daemon.scheduler.get_job(job).next_run_time == soon
                assert daemon.scheduler.get_job(job).trigger.interval == timedelta(seconds=longer)

            # Shorter cadence: brought forward to one new interval from now, not to now.
            rewrite("1m", "2m")
            assert await daemon.reload()
            shorter = job_interval(daemon.runtime, daemon.config.feeds[0])
            assert shorter < longer
            now = datetime.now(tz)
            for job in jobs:
                ahead = daemon.scheduler.get_job(job).next_run_time - now
                assert timedelta(seconds=shorter - 10) < ahead <= timedelta(seconds=shorter)
        finally:
            await daemon.stop()

    asyncio.run(scenario())
