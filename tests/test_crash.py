"""kill -9 while alerts flow: every alert still arrives, at least once (spec G43).

``newsmon run`` runs as a subprocess against a real webhook receiver on
127.0.0.1, with a delivery job every 0.3 s. Alerts are written into the outbox
(as ``record_item`` writes them) before and while the daemon runs, and the
daemon is killed with SIGKILL at a random moment after it has started, many
times over. Then it runs once more until the outbox is empty, and every alert
must have been received. Duplicates are allowed (at-least-once) but bounded:
at most one message per kill (the one in flight), each logged by the next run.

Start-up (imports: about 2 s of CPU) would dominate 50 restarts, so the killed
daemons are forked from a "zygote" process that has imported ``monitor.cli``
once: each child runs the real entry point (``monitor.cli`` with
``--config ... run``) in its own process, is SIGKILLed, and is reaped by the
zygote. The final drain is a plain ``python -m monitor run``. Two independent
loops (each its own database and receiver) run side by side.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.identity import article_key, item_planner
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TopicMatch
from monitor.runtime.stories import StoryKeeper
from monitor.storage import Storage, StoreError, open_storage
from monitor.storage.stories import StoryRepository
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert
from tests.helpers.paths import REPO
from tests.helpers.servers import Site

KILLS_PER_LOOP = 26  # two loops: 52 kills
KEY = re.compile(r"a\d+-ceasefire-hook")


def slow_ok(handler: object) -> tuple[int, dict[str, str], bytes]:
    time.sleep(0.02)  # a send takes a moment, so kills land mid-send too
    return 200, {"Content-Type": "application/json"}, b"{}"


def write_config(folder: Path, port: int, *, per_story: bool = False) -> Path:
    """No feeds, one webhook channel, a delivery job every 0.3 s with quick retries."""
    return ConfigFactory(folder).write(
        database="outbox.db",
        channels=[{"name": "hook", "url": f"json://127.0.0.1:{port}/hook", "rate_limit": 0}],
        delivery={"interval": "0.3s", "timeout": "2s", "retry_base": "0.2s", "retry_max": "1s",
                  "collapse_over": 6, "per_story": per_story})


ZYGOTE = r"""
import os, signal, sys
import apprise
import monitor.cli
apprise.Apprise().add("json://127.0.0.1:9/warm-up")  # load apprise's plugins once
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "run":
        config, log = args
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDWR)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(null, 0); os.dup2(null, 1); os.dup2(out, 2)
            sys.argv = ["newsmon", "--config", config, "run"]
            code = 0
            try:
                monitor.cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            os._exit(code)
        print(pid, flush=True)
    elif command == "kill":
        pid = int(args[0])
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status),
              flush=True)
"""


class Zygote:
    """A process that has imported newsmon and forks daemons on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPO, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.ask("") == "ready"

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def run(self, config: Path, log: Path) -> int:
        return int(self.ask(f"run {config} {log}"))

    def kill(self, pid: int) -> int:
        """SIGKILL the daemon; returns its exit status (-9)."""
        return int(self.ask(f"kill {pid}"))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run"], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), env={**os.environ},
    )


def running(log: Path) -> bool:
    return log.exists() and b"newsmon running" in log.read_bytes()


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def insert(store: Storage, seed: int) -> int:
    """One alert, as the pipeline writes it; retried like a poll is when the store
    reports a busy database (a deferred transaction that reads, then writes,
    can lose the race to the daemon's delivery writes)."""
    for _ in range(50):
        try:
            return add_alert(store, "hook", feed=f"http://feeds.test/{seed}.xml")
        except StoreError:
            time.sleep(0.01)
    raise AssertionError("the database stayed busy")


def crash_loop(folder: Path, seed: int, results: dict[str, object]) -> None:
    rng = random.Random(seed)
    with Site(routes={"/hook": slow_ok}) as receiver:
        config = write_config(folder, receiver.port)
        store = open_storage(folder / "outbox.db")
        expected: list[str] = []

        def add(count: int) -> None:
            for _ in range(count):
                alert_id = insert(store, seed)
                expected.append(store.db.execute(
                    "SELECT alert_key FROM alerts WHERE id = ?", (alert_id,)).fetchone()[0])

        kills = 0
        zygote = Zygote()
        try:
            for run in range(KILLS_PER_LOOP):
                add(rng.randint(2, 6))
                log = folder / f"run-{run}.log"
                pid = zygote.run(config, log)
                try:
                    started = wait_for(lambda: running(log), 15)  # noqa: B023
                    assert started, log.read_text(errors="replace")[-2000:]
                    # Alerts keep arriving while it runs; the kill comes at a random moment.
                    deadline = time.monotonic() + rng.uniform(0.0, 0.6)
                    while time.monotonic() < deadline:
                        if rng.random() < 0.3:
                            add(1)
                        time.sleep(0.03)
                finally:
                    kills += zygote.kill(pid) == -signal.SIGKILL
        finally:
            zygote.close()

        # One last run, until the outbox is drained.
        log = folder / "final.log"
        proc = start(config, log)
        db = sqlite3.connect(folder / "outbox.db")
        try:
            drained = wait_for(lambda: db.execute(
                "SELECT COUNT(*) FROM alerts WHERE status != 'sent'").fetchone()[0] == 0, 30)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            db.close()
            store.close()
        received: list[str] = []
        repeated_messages = 0  # messages carrying an alert already received
        for request in receiver.requests:
            if request.method == "POST":
                keys = KEY.findall(request.json()["message"])
                repeated_messages += any(k in received for k in keys)
                received.extend(keys)
        resends_logged = sum(
            (folder / f"run-{n}.log").read_text(errors="replace").count("may arrive twice")
            for n in range(1, KILLS_PER_LOOP)) + log.read_text(errors="replace").count(
            "may arrive twice")
        results.update(kills=kills, drained=drained, expected=expected, received=received,
                       repeated=repeated_messages, resends_logged=resends_logged)


def guarded(folder: Path, seed: int, results: dict[str, object]) -> None:
    """Run a crash loop in a thread, keeping its failure for the test to report."""
    try:
        crash_loop(folder, seed, results)
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigkill_at_random_moments_loses_no_alert(tmp_path: Path) -> None:
    results: list[dict[str, object]] = [{}, {}]
    threads = []
    for index in range(2):
        folder = tmp_path / f"loop{index}"
        folder.mkdir()
        threads.append(threading.Thread(target=guarded, args=(folder, 1000 + index,
                                                              results[index])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total_kills = 0
    for result in results:
        assert "error" not in result, result["error"]
        total_kills += int(result["kills"])  # type: ignore[call-overload]
        assert result["drained"], "the outbox was not drained after the last restart"
        expected = set(result["expected"])  # type: ignore[call-overload]
        received = list(result["received"])  # type: ignore[call-overload]
        missing = expected - set(received)
        assert not missing, f"lost {len(missing)} of {len(expected)} alerts: {sorted(missing)[:10]}"
        assert len(expected) >= 100
        # Claims + a mark right after each send: a kill re-sends at most the one
        # message in flight, and the next run says so in its log.
        repeated = int(result["repeated"])  # type: ignore[call-overload]
        kills = int(result["kills"])  # type: ignore[call-overload]
        logged = int(result["resends_logged"])  # type: ignore[call-overload]
        assert repeated <= kills, (repeated, kills)
        assert repeated <= logged, (repeated, logged)
        print(f"kills {kills}: {repeated} message(s) sent twice, {logged} re-send(s) logged")
    assert total_kills >= 50


# --- the same with per-story alerts and republished stories ---------------------------------

STORY_KILLS = 10
STORY_KEY = re.compile(r"story-(\d+)-hook-(\d+)-(ceasefire|prisoners)")
STORY_TOPICS = ("ceasefire", "prisoners")


def story_article(story: int, copy: int) -> ProcessedArticle:
    """A republication (``copy``) of synthetic story ``story``: the same wire text, its own URL;
    matched on both topics (the first copy's two rows are one message)."""
    words = [f"s{story}t{i}" for i in range(60)]
    text = f"Wire report {story}: " + " ".join(words) + "."
    url = f"https://outlet{copy}.test/{story}"
    item = FeedItem(guid=url, link=url, canonical_url=url, title=f"Story {story} headline s{story}t1",
                    summary=text, published=None, content_hash=f"c{story}-{copy}")
    article = Article(title=item.title, summary=text, body=text, text_source="summary", url=url,
                      feed_url=f"https://outlet{copy}.test/feed.xml")
    matches = tuple(TopicMatch(topic=t, score=3.0, threshold=1.0, evidence=(
        EvidenceSentence("body", text[:80], text[:80], (t,)),)) for t in STORY_TOPICS)
    return ProcessedArticle(item=item, article=article, matches=matches)


def story_crash_loop(folder: Path, seed: int, results: dict[str, object]) -> None:
    rng = random.Random(seed)
    with Site(routes={"/hook": slow_ok}) as receiver:
        config = write_config(folder, receiver.port, per_story=True)
        store = open_storage(folder / "outbox.db")
        keeper = StoryKeeper(StoryRepository(store.connection))
        stories = 0
        expected: set[str] = set()

        def add_story() -> None:
            nonlocal stories
            stories += 1
            for copy in range(rng.randint(1, 4)):  # the story and its republications
                processed = story_article(stories, copy)
                for _ in range(50):
                    try:
                        context = keeper.plan_context(processed)
                        feed_id = store.feeds.get(processed.article.feed_url).id
                        result = store.items.record_item(
                            feed_id, "Test feed", processed, article_key=article_key(processed.item),
                            plan=item_planner(processed.matches, lambda m: ["hook"], story=context))
                        break
                    except StoreError:
                        time.sleep(0.01)
                else:
                    raise AssertionError("the database stayed busy")
                keys = [r[0] for r in store.db.execute(
                    f"SELECT alert_key FROM alerts WHERE id IN ({','.join('?' * len(result.alert_ids))})",
                    result.alert_ids)] if result.alert_ids else []
                assert copy == 0 or not keys, keys  # a republication adds no alert
                expected.update(keys)

        kills = 0
        zygote = Zygote()
        try:
            for run in range(STORY_KILLS):
                for _ in range(rng.randint(1, 3)):
                    add_story()
                log = folder / f"run-{run}.log"
                pid = zygote.run(config, log)
                try:
                    assert wait_for(lambda: running(log), 15), log.read_text(errors="replace")[-2000:]  # noqa: B023
                    deadline = time.monotonic() + rng.uniform(0.0, 0.6)
                    while time.monotonic() < deadline:
                        if rng.random() < 0.3:
                            add_story()
                        time.sleep(0.03)
                finally:
                    kills += zygote.kill(pid) == -signal.SIGKILL
        finally:
            zygote.close()

        log = folder / "final.log"
        proc = start(config, log)
        db = sqlite3.connect(folder / "outbox.db")
        try:
            drained = wait_for(lambda: db.execute(
                "SELECT COUNT(*) FROM alerts WHERE status != 'sent'").fetchone()[0] == 0, 30)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            db.close()
            store.close()
        received: list[str] = []
        repeated = split = 0
        for request in receiver.requests:
            if request.method == "POST":
                found = STORY_KEY.findall(request.json()["message"])
                keys = [f"story-{s}-hook-{n}-{t}" for s, n, t in found]
                repeated += any(k in received for k in keys)
                by_story: dict[str, set[str]] = {}
                for story_id, _, topic in found:
                    by_story.setdefault(story_id, set()).add(topic)
                split += any(topics != set(STORY_TOPICS) for topics in by_story.values())
                received.extend(keys)
        logs = [folder / f"run-{n}.log" for n in range(STORY_KILLS)] + [log]
        resends_logged = sum(p.read_text(errors="replace").count("may arrive twice")
                             for p in logs if p.exists())
        results.update(kills=kills, drained=drained, expected=expected, received=received, repeated=repeated,
                       split=split, resends_logged=resends_logged, stories=stories)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_with_per_story_alerts_loses_no_story_and_sends_none_twice(tmp_path: Path) -> None:
    results: dict[str, object] = {}
    story_crash_loop(tmp_path, 2000, results)
    expected = set(results["expected"])  # type: ignore[call-overload]
    received = list(results["received"])  # type: ignore[call-overload]
    assert results["drained"], "the outbox was not drained after the last restart"
    assert len(expected) >= 2 * 20  # two topics of at least 20 stories
    assert not expected - set(received), f"lost {sorted(expected - set(received))[:10]}"
    assert set(received) <= expected
    # A story's topics always travel in one message, and a story is sent twice only when a kill
    # caught its message in flight (the next run logs it).
    kills, repeated = int(results["kills"]), int(results["repeated"])  # type: ignore[call-overload]
    assert results["split"] == 0
    assert repeated <= kills and repeated <= int(results["resends_logged"]), results  # type: ignore[call-overload]
    assert kills == STORY_KILLS
    print(f"per story: {results['stories']} stories, {kills} kills, {repeated} message(s) sent twice")
