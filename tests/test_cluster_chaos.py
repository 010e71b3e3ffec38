"""Chaos: 2 pollers, 3 workers and 2 deliver processes on one PostgreSQL, SIGKILLed at random.

Real subprocesses (``newsmon poller`` / ``worker`` / ``deliver``) share one real
PostgreSQL database. Loopback feeds publish 200 articles that match the seed rules
over about 40 s; meanwhile a random process is SIGKILLed every few seconds for
about 50 s and started again at once. Then, once the work has drained:

- every article was stored, and every alert of every match reached its channel
  (none lost); a message carrying an alert already received is a duplicate, and
  there are at most as many as kills of a deliver process (the one in flight);
- no feed was ever polled by two pollers at once (the feed server counts the
  requests in flight per feed), and never more than ``fetch.per_host`` (4)
  requests were in flight to the feed host, from all processes together.

Start-up (imports) would dominate the restarts, so the processes are forked from
a "zygote" that imported ``monitor.cli`` once (tests/helpers/zygote.py, as in
tests/test_crash.py); each child runs the real entry point with its own argv.
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import MATCHING_TITLE
from tests.helpers.postgres import PostgresServer
from tests.helpers.servers import Site, rss
from tests.helpers.service import eventually
from tests.helpers.zygote import Zygote, ok_after, resends_logged

pytestmark = pytest.mark.postgres

ARTICLES = 200
FEEDS = 8
PUBLISH_OVER_S = 40.0
CHAOS_S = 50.0
DRAIN_S = 30.0
ROLES = {"poller": 2, "worker": 3, "deliver": 2}
ALERT_KEY = re.compile(r"(?:Alert id|^\s+id): (\S+)", re.MULTILINE)  # alert and digest lines

class Feeds:
    """Loopback feeds that publish ``ARTICLES`` matching articles over time, and count
    the requests in flight per feed (two at once: two pollers) and to the host."""

    def __init__(self) -> None:
        self.site = Site()
        self.started: float | None = None
        self.lock = threading.Lock()
        self.in_flight: Counter[int] = Counter()
        self.host_in_flight = 0
        self.max_host_in_flight = 0
        self.overlaps: list[int] = []
        self.polls: Counter[int] = Counter()
        for feed in range(FEEDS):
            self.site.routes[f"/feed/{feed}.xml"] = self._route(feed)

    def url(self, feed: int) -> str:
        return self.site.url(f"/feed/{feed}.xml")

    def published(self) -> int:
        if self.started is None:
            return 0
        share = (time.monotonic() - self.started) / PUBLISH_OVER_S
        return min(ARTICLES, int(share * ARTICLES) + 1)

    def _route(self, feed: int) -> Callable[[Any], tuple[int, dict[str, str], bytes]]:
        def handler(_request: Any) -> tuple[int, dict[str, str], bytes]:
            with self.lock:
                self.in_flight[feed] += 1
                self.host_in_flight += 1
                self.polls[feed] += 1
                if self.in_flight[feed] > 1:
                    self.overlaps.append(feed)
                self.max_host_in_flight = max(self.max_host_in_flight, self.host_in_flight)
            try:
                time.sleep(0.05)  # a poll takes a moment: overlapping polls would show
                items = [{
                    "title": f"{MATCHING_TITLE} (report {n})",
                    "link": f"http://news.test/articles/{n}",
                    "guid": f"story-{n}",
                    "description": f"{MATCHING_TITLE}. Report number {n}.",
                } for n in range(feed, self.published(), FEEDS)]
                return 200, {"Content-Type": "application/rss+xml"}, rss(items, f"Feed {feed}")
            finally:
                with self.lock:
                    self.in_flight[feed] -= 1
                    self.host_in_flight -= 1

        return handler


def one(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_chaos_loses_no_alert_and_never_polls_a_feed_twice_at_once(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database("chaos")
    rng = random.Random(15)
    feeds = Feeds()
    receiver = Site(routes={"/hook": ok_after(0.01), "/desk": ok_after(0.01)})
    with feeds.site, receiver:
        config = ConfigFactory(tmp_path).write(
            database=url,
            feeds=[{"url": feeds.url(n), "name": f"feed-{n}", "interval": "1s"}
                   for n in range(FEEDS)],
            channels=[{"name": name, "url": f"json://127.0.0.1:{receiver.port}/{name}",
                       "rate_limit": 0} for name in ("hook", "desk")],
            fetch={"fetch_articles": False, "timeout": "1s", "min_interval": "1s"},
            delivery={"interval": "0.3s", "timeout": "2s", "retry_base": "0.2s",
                      "retry_max": "1s"})
        argv = {"poller": ["poller", "--lease", "3"], "worker": ["worker", "--beat", "1"],
                "deliver": ["deliver"]}
        zygote = Zygote(preload=("procrastinate", "psycopg", "monitor.cluster.poller",
                                 "monitor.cluster.worker", "monitor.cluster.deliver"))
        logs: list[Path] = []
        running: list[tuple[str, int]] = []
        kills: Counter[str] = Counter()

        def start(role: str) -> int:
            log = tmp_path / f"{role}-{len(logs)}.log"
            logs.append(log)
            return zygote.run(log, "--config", str(config), *argv[role])

        try:
            # The first process creates the schema; the others start beside it.
            running.append(("poller", start("poller")))
            assert eventually(lambda: logs[0].exists() and b"running" in logs[0].read_bytes(),
                              30, interval=0.2), logs[0].read_text(errors="replace")[-3000:]
            for role, count in ROLES.items():
                for _ in range(count - (role == "poller")):
                    running.append((role, start(role)))
            feeds.started = time.monotonic()
            chaos_end = feeds.started + CHAOS_S
            while time.monotonic() < chaos_end:
                time.sleep(rng.uniform(1.5, 3.5))
                index = rng.randrange(len(running))
                role, pid = running[index]
                if zygote.kill(pid) == -signal.SIGKILL:
                    kills[role] += 1
                running[index] = (role, start(role))

            def drained() -> bool:
                return (one(url, "SELECT COUNT(*) FROM articles") >= ARTICLES
                        and one(url, "SELECT COUNT(*) FROM alerts WHERE status != 'sent'") == 0
                        and one(url, "SELECT COUNT(*) FROM cluster_queued_items") == 0)

            done = eventually(drained, DRAIN_S, interval=0.2)
            time.sleep(0.5)  # the last sends' requests land
        finally:
            for _role, pid in running:
                zygote.term(pid)
            zygote.close()

        tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}"
                          for log in logs[-7:])
        articles = one(url, "SELECT COUNT(*) FROM articles")
        assert done, (f"not drained: {articles} articles,"
                      f" {rows(url, 'SELECT status, COUNT(*) FROM alerts GROUP BY status')}\n{tails}")
        assert articles == ARTICLES
        # Every article matched, and each match has one alert per channel.
        alerts = rows(url, "SELECT alert_key, channel, match_id FROM alerts WHERE kind = 'match'")
        per_match = Counter(match for _, _, match in alerts)
        assert one(url, "SELECT COUNT(DISTINCT article_id) FROM matches") == ARTICLES
        assert set(per_match.values()) == {2}, Counter(per_match.values())
        received: dict[str, Counter[str]] = defaultdict(Counter)
        duplicate_messages = 0
        for request in receiver.requests:
            if request.method != "POST":
                continue
            channel = request.path.strip("/")
            ids = ALERT_KEY.findall(request.json()["message"])
            duplicate_messages += any(received[channel][i] for i in ids)
            received[channel].update(ids)
        missing = [(key, channel) for key, channel, _ in alerts if not received[channel][key]]
        assert not missing, f"{len(missing)} of {len(alerts)} alerts never arrived: {missing[:10]}"
        resent_logged = resends_logged(logs)
        print(f"kills {dict(kills)}; {len(alerts)} alerts, {duplicate_messages} duplicate"
              f" message(s), {resent_logged} re-send(s) logged; polls {sum(feeds.polls.values())},"
              f" max in flight to the host {feeds.max_host_in_flight}")
        assert sum(kills.values()) >= 12
        assert duplicate_messages <= kills["deliver"], (duplicate_messages, dict(kills))
        assert not feeds.overlaps, f"feeds polled by two pollers at once: {feeds.overlaps[:10]}"
        assert feeds.max_host_in_flight <= 4
