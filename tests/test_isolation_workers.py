"""Issue 16, row 1: one killed or runaway extraction worker never stops processing.

Real worker processes (spawned, rules compiled), a real feed on loopback. A
worker killed like the OOM killer does is replaced and later polls store their
items; an item that kills its worker every time is tried MAX_ATTEMPTS times,
then stored as a failed item while the rest of the feed proceeds; an item busy
past its CPU deadline has its worker killed; and the watchdog is starved while
the items that arrive all fail.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.models import ArticleInput, ProcessedArticle
from monitor.runtime import processor as processor_module
from monitor.runtime.cycles import PollOutcome
from monitor.runtime.daemon import Daemon
from monitor.runtime.pipeline import Pipeline
from monitor.runtime.processor import MAX_ATTEMPTS, ArticleProcessor
from monitor.runtime.supervisor import WorkerLost, WorkerPool
from monitor.runtime.systemd import Notifier
from monitor.runtime.worker import WorkerSettings, process_in_worker
from monitor.storage import open_storage
from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import MATCHING_TITLE, pipeline_config, rows
from tests.helpers.servers import Site, rss

pytestmark = pytest.mark.slow


# --- functions the worker processes import by name (spawn) ----------------------------


def kill_on_poison(source: ArticleInput) -> ProcessedArticle:
    """The real stages, except that an item titled POISON kills its worker (as the
    OOM killer would)."""
    if "POISON" in source.item.title:
        os.kill(os.getpid(), signal.SIGKILL)
    return process_in_worker(source)


def spin_on_runaway(source: ArticleInput) -> ProcessedArticle:
    """The real stages, except that an item titled RUNAWAY never finishes (a
    catastrophic regex, a parser loop)."""
    if "RUNAWAY" in source.item.title:
        while True:
            pass
    return process_in_worker(source)


def square(n: int) -> int:
    return n * n


def die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# --- helpers -----------------------------------------------------------------------------


def _items(prefix: str, n: int, title: str = MATCHING_TITLE) -> list[dict[str, str]]:
    return [{"title": f"{title} ({prefix} {i})", "link": f"http://127.0.0.1:9/{prefix}/{i}",
             "guid": f"{prefix}-{i}", "description": f"{title}. Story {prefix} {i}."}
            for i in range(n)]


def _pipeline(config: Config, processor: ArticleProcessor) -> Pipeline:
    store = open_storage(config.database_path())
    store.feeds.sync((f.url, f.name, f.tags) for f in config.feeds)
    return Pipeline(config, store, Pipeline.make_fetcher(config), processor)


async def _close(pipeline: Pipeline) -> None:
    await pipeline.fetcher.aclose()
    pipeline.processor.close()


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_r1_a_killed_worker_is_replaced_and_the_next_poll_stores_its_items(
        tmp_path: Path, site: Site) -> None:
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss(_items("a", 1)))
    config = pipeline_config(tmp_path, [site.url("/feed.xml")])
    feed = config.feeds[0]
    processor = ArticleProcessor(config, workers=1)
    pipeline = _pipeline(config, processor)

    async def scenario() -> tuple[PollOutcome, PollOutcome, float]:
        try:
            first = await pipeline.poll(feed, force=True)
            for pid in processor.worker_pids():  # what the OOM killer does
                os.kill(pid, signal.SIGKILL)
            site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                        rss([*_items("a", 1), *_items("b", 3)]))
            started = time.monotonic()
            second = await pipeline.poll(feed, force=True)
            return first, second, time.monotonic() - started
        finally:
            await _close(pipeline)

    first, second, seconds = asyncio.run(scenario())
    stored = rows(config, "SELECT COUNT(*) FROM items")[0][0]
    matched = rows(config, "SELECT COUNT(DISTINCT article_id) FROM matches")[0][0]
    print(f"\nrow 1: after SIGKILL of the worker, the next poll: {second.summary()}"
          f" in {seconds:.1f}s; items stored {stored} of 4, articles matched {matched};"
          f" workers restarted {processor.health.restarts}")
    assert first.ok and first.new_items == 1
    # Before: every later poll failed with BrokenProcessPool (0 of 3 new stories stored).
    assert second.ok, second.error
    assert second.new_items == 3 and second.failed_items == 0
    assert stored == 4 and matched == 4
    assert processor.health.restarts >= 1


@pytest.mark.timeout(180)
def test_r1_an_item_that_kills_its_worker_is_tried_then_stored_as_failed_and_the_rest_proceed(
        tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [*_items("good", 4), {"title": "POISON page", "guid": "poison",
                                  "link": "http://127.0.0.1:9/poison", "description": "x"}]
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss(items))
    config = pipeline_config(tmp_path, [site.url("/feed.xml")])
    monkeypatch.setattr(processor_module, "process_in_worker", kill_on_poison)
    processor = ArticleProcessor(config, workers=2)
    pipeline = _pipeline(config, processor)

    async def scenario() -> tuple[PollOutcome, float]:
        try:
            started = time.monotonic()
            outcome = await pipeline.poll(config.feeds[0], force=True)
            return outcome, time.monotonic() - started
        finally:
            await _close(pipeline)

    outcome, seconds = asyncio.run(scenario())
    stored = {guid.rsplit("/", 1)[-1]: error for guid, error in rows(
        config, "SELECT i.guid, a.page_error FROM items i JOIN articles a ON a.id = i.article_id")}
    print(f"\nrow 1: a poison item: {outcome.summary()} in {seconds:.1f}s; worker restarts"
          f" {processor.health.restarts}; its record: {stored.get('poison')!r}")
    assert outcome.ok and outcome.failed_items == 1
    assert len(stored) == 5  # the 4 good items and the failed one (seen: not retried forever)
    assert "processing failed" in (stored["poison"] or "") and "died" in stored["poison"]
    assert f"tried {MAX_ATTEMPTS} times" in stored["poison"]
    assert processor.health.restarts == MAX_ATTEMPTS
    assert outcome.alerts >= 4 and outcome.matches >= 4  # the good items matched and alerted


@pytest.mark.timeout(120)
def test_r1_an_item_past_its_cpu_deadline_has_its_worker_killed_and_the_feed_proceeds(
        tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [*_items("good", 3), {"title": "RUNAWAY page", "guid": "runaway",
                                  "link": "http://127.0.0.1:9/runaway", "description": "x"}]
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss(items))
    config = pipeline_config(tmp_path, [site.url("/feed.xml")])
    monkeypatch.setattr(processor_module, "process_in_worker", spin_on_runaway)
    processor = ArticleProcessor(config, workers=1, cpu_seconds=1.0)
    pipeline = _pipeline(config, processor)

    async def scenario() -> tuple[PollOutcome, float, float]:
        started = time.monotonic()
        try:
            outcome = await pipeline.poll(config.feeds[0], force=True)
            seconds = time.monotonic() - started
        finally:
            closing = time.monotonic()
            await _close(pipeline)
        return outcome, seconds, time.monotonic() - closing

    outcome, seconds, close_seconds = asyncio.run(scenario())
    stored = {guid.rsplit("/", 1)[-1]: error for guid, error in rows(
        config, "SELECT i.guid, a.page_error FROM items i JOIN articles a ON a.id = i.article_id")}
    print(f"\nrow 1: a runaway item (CPU deadline 1 s): {outcome.summary()} in {seconds:.1f}s;"
          f" deadline kills {processor.health.deadline_kills}; close {close_seconds:.2f}s")
    assert outcome.ok and outcome.failed_items == 1 and len(stored) == 4
    assert "CPU deadline" in (stored["runaway"] or "")
    assert processor.health.deadline_kills == MAX_ATTEMPTS
    assert seconds < 60  # 3 tries of ~1 s CPU each, plus restarts (spawn + rules)
    assert close_seconds < 5


@pytest.mark.timeout(120)
def test_r1_the_pool_itself_replaces_a_dead_worker_and_keeps_serving(tmp_path: Path) -> None:
    config = pipeline_config(tmp_path, [])
    pool = WorkerPool(1, WorkerSettings.from_config(config), cpu_seconds=5)

    async def scenario() -> list[object]:
        out: list[object] = [await pool.call(square, 3)]
        with pytest.raises(WorkerLost, match="killed by SIGKILL"):
            await pool.call(die, None)
        out.append(await pool.call(square, 4))
        return out

    try:
        assert asyncio.run(scenario()) == [9, 16]
    finally:
        pool.close()
    assert pool.health.restarts == 1


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__("@unused")
        self.sent: list[tuple[str, ...]] = []

    def send(self, *fields: str) -> bool:
        self.sent.append(fields)
        return True


@pytest.mark.timeout(60)
def test_r1_the_watchdog_starves_and_healthz_says_so_while_arriving_items_all_fail(
        tmp_path: Path, site: Site) -> None:
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss(_items("a", 1)))
    config = ConfigFactory(tmp_path).load(database="test.db", feeds=[site.url("/feed.xml")],
                                          fetch={"fetch_articles": False},
                                          service={"poll_stall_timeout": "5s"})
    notifier = RecordingNotifier()
    now = [1000.0]

    async def scenario() -> tuple[list[str], bool, dict, list[str]]:
        daemon = Daemon(config, notifier=notifier)
        daemon.progress.clock = lambda: now[0]
        await daemon.start(paused=True)
        try:
            # Polls finish, but every item that arrives fails in the workers.
            for _ in range(3):
                await daemon._after_poll(PollOutcome(feed="f", ok=True, new_items=2,
                                                     failed_items=2))
                now[0] += 3
            notifier.sent.clear()
            await daemon.heartbeat()
            starved = [f for fields in notifier.sent for f in fields]
            healthy, payload = await daemon.health_payload()
            await daemon._refresh_from_db()  # written for `newsmon status`
            problem = rows(config, "SELECT value FROM meta WHERE key = 'daemon_problem'")
            # One item processed: fed again.
            await daemon._after_poll(PollOutcome(feed="f", ok=True, new_items=1))
            notifier.sent.clear()
            await daemon.heartbeat()
            fed = [f for fields in notifier.sent for f in fields]
            return [*starved, "|", *fed], healthy, payload, [p[0] for p in problem]
        finally:
            await daemon.stop()

    sent, healthy, payload, problem = asyncio.run(scenario())
    starved, fed = sent[: sent.index("|")], sent[sent.index("|") + 1:]
    print(f"\nrow 1: 6 items failed over 9 s (stall limit 5 s): sent {starved};"
          f" /healthz healthy={healthy} problems={payload['problems']}; then {fed}")
    assert "WATCHDOG=1" not in starved
    assert any("item processing has failed" in f for f in starved)
    assert not healthy and any("item processing has failed" in p for p in payload["problems"])
    assert problem and "item processing has failed" in problem[0]
    assert "WATCHDOG=1" in fed

