"""Hostile inputs the other test files did not cover yet (docs/hostile-inputs-coverage.md).

Each test names its case of shared/spec/hostile-inputs.md (A1 ... G50) and
asserts the spec's *Expected* line. Everything talks to 127.0.0.1 only: a
tripwire (autouse) fails any test that tries to connect anywhere else, and
names resolve through ``StaticResolver`` or are IP literals refused before any
connection. Daemon tests run ``Daemon`` in this process with a recording
``Notifier`` (no systemd needed) and stop it themselves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import time_machine
from apprise.plugins.slack import NotifySlack
from click.testing import CliRunner

from monitor.cli.app import EXIT_CONFIG, cli
from monitor.config import ChannelConfig, FeedConfig, ServiceSettings, load_config
from monitor.delivery.deliverer import ChannelError, Deliverer
from monitor.ingest.netguard import EgressPolicy
from monitor.logs import setup_logging
from monitor.records import parse_iso
from monitor.runtime.assembly import Runtime
from monitor.runtime.cycles import PollOutcome
from monitor.runtime.daemon import Daemon
from monitor.runtime.retention import maintain
from monitor.runtime.systemd import Notifier
from monitor.storage import open_storage
from monitor.yamlfile import ConfigErrors
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert, settings
from tests.helpers.feed import MATCHING_TITLE, build, feed_row, pipeline_config, rows, run
from tests.helpers.hostile import RSS, Canary, HostileServer, StaticResolver
from tests.helpers.servers import Site, rss
from tests.helpers.service import write_config
from tests.test_fetch_transport import expect_error
from tests.test_fetch_transport import fetch as transport_fetch

pytestmark = pytest.mark.timeout(60)

SLACK_TOKENS = "T1ABCDEFG/B1ABCDEFG/abcdefghijklmnopqrstuvwx"
SLACK_URL = f"slack://{SLACK_TOKENS}"
SLACK_PATH = f"/services/{SLACK_TOKENS}"


# --- harness -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Tripwire: refuse (and record) any TCP/UDP connect to a non-loopback address."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address:
            try:
                ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
            except ValueError:
                ip = None  # a name: only loopback names reach here in these tests
            if ip is None or not ip.is_loopback:
                attempts.append(address)
                raise ConnectionRefusedError(f"tripwire: non-loopback connect to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    assert attempts == [], f"tried to connect outside loopback: {attempts}"


@pytest.fixture
def slack_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A local stand-in for hooks.slack.com (harness H5)."""
    with Site(routes={SLACK_PATH: (200, {"Content-Type": "text/plain"}, b"ok")}) as site:
        monkeypatch.setattr(NotifySlack, "webhook_url", site.url("/services"))
        yield site


def feed_of(body: bytes, ctype: str = "application/rss+xml") -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": ctype}, body


def cdata_feed(title: str, guid: str = "h1", pub: str | None = None) -> bytes:
    """RSS whose one item title is CDATA: markup in it is text, not tags."""
    date = f"<pubDate>{pub}</pubDate>" if pub else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        "<link>http://127.0.0.1/</link><description>d</description>"
        f"<item><title><![CDATA[{title}]]></title><guid>{guid}</guid>"
        f"<description><![CDATA[{title}]]></description>{date}</item></channel></rss>"
    ).encode()


class RecordingNotifier(Notifier):
    """A Notifier that keeps every datagram it would send (WATCHDOG=1, STATUS=...)."""

    def __init__(self, watchdog_usec: int = 1_000_000) -> None:
        super().__init__("@newsmon-test-not-used", watchdog_usec=watchdog_usec)
        self.sent: list[tuple[float, tuple[str, ...]]] = []

    def send(self, *fields: str) -> bool:
        self.sent.append((time.monotonic(), fields))
        return True

    def pings(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [at for at, fields in self.sent if "WATCHDOG=1" in fields and start <= at < end]

    def statuses(self) -> list[str]:
        return [f for _, fields in self.sent for f in fields if f.startswith("STATUS=")]


async def sleep_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def count_polls(daemon: Daemon) -> tuple[list[tuple[str, float, float]], dict[str, int]]:
    """Wrap ``daemon.poll_feed`` (before ``start``) to record (url, start, end) of each
    poll and the highest number of polls of one feed in flight at once."""
    record: list[tuple[str, float, float]] = []
    peak: dict[str, int] = {}
    active: dict[str, int] = {}
    original = daemon.poll_feed

    async def counted(url: str) -> PollOutcome | None:
        active[url] = active.get(url, 0) + 1
        peak[url] = max(peak.get(url, 0), active[url])
        started = time.monotonic()
        try:
            return await original(url)
        finally:
            active[url] -= 1
            record.append((url, started, time.monotonic()))

    daemon.poll_feed = counted  # type: ignore[method-assign]
    return record, peak


def run_daemon(config: Path, notifier: Notifier,
               scenario: Callable[[Daemon], Awaitable[None]],
               prepare: Callable[[Daemon], None] | None = None) -> None:
    """Start a Daemon in this process, run ``scenario`` against it, always stop it."""

    async def go() -> None:
        daemon = Daemon(load_config(config), notifier=notifier)
        if prepare is not None:
            prepare(daemon)
        await daemon.start()
        try:
            await scenario(daemon)
        finally:
            await daemon.stop()

    asyncio.run(go())


# --- A. transport, through the pipeline (harness H6) ----------------------------------------


def test_a1_slowloris_feed_fails_with_backoff_and_the_other_feed_still_polls(
        tmp_path: Path, hostile: HostileServer) -> None:
    """A1 + H6: the total deadline fails that feed only; it is recorded and backed off."""
    slow, good = hostile.url("/slowloris-headers"), hostile.url("/feed")
    config = pipeline_config(tmp_path, [slow, good], timeout=1.5)
    pipeline = build(config)
    started = time.monotonic()
    report = run(pipeline, pipeline.run_cycle())
    assert time.monotonic() - started < 4.0
    by_url = {o.url: o for o in report.outcomes}
    assert not by_url[slow].ok and by_url[slow].error_kind == "timeout"
    assert (by_url[slow].reason or "").startswith("backoff") and (by_url[slow].interval or 0) >= 90
    assert by_url[good].ok and by_url[good].new_items == 2
    row = feed_row(config, slow)
    assert row["consecutive_failures"] == 1 and row["last_error_kind"] == "timeout"
    next_poll = parse_iso(row["next_poll_at"])
    assert next_poll is not None and next_poll > datetime.now(UTC) + timedelta(seconds=60)
    assert feed_row(config, good)["consecutive_failures"] == 0
    assert rows(config, "SELECT COUNT(*) FROM items") == [(2,)]


@pytest.mark.parametrize("bad", ["html", "empty", "junk"])
def test_a8_a_200_that_is_not_a_feed_fails_and_keeps_the_items(
        tmp_path: Path, site: Site, bad: str) -> None:
    """A8 (+ Also): HTML login page, empty or binary 200: "not a feed", a counted
    failure, never "0 new items"; the items stored before stay."""
    good = rss([{"title": f"Story {n}", "guid": f"s{n}", "description": "x"} for n in range(3)])
    bodies = {"html": (b"<!doctype html><html><body><form action='/login'><input name=pw>"
                       b"</form></body></html>", "text/html; charset=utf-8"),
              "empty": (b"", "application/rss+xml"),
              "junk": (bytes(range(256)) * 16, "application/rss+xml")}
    site.routes["/feed"] = feed_of(good)
    config = pipeline_config(tmp_path, [site.url("/feed")])
    pipeline = build(config)

    async def scenario() -> list[PollOutcome]:
        first = await pipeline.poll(config.feeds[0], force=True)
        site.routes["/feed"] = feed_of(*bodies[bad])
        broken = await pipeline.poll(config.feeds[0], force=True)
        site.routes["/feed"] = feed_of(good)
        back = await pipeline.poll(config.feeds[0], force=True)
        return [first, broken, back]

    first, broken, back = run(pipeline, scenario())
    assert first.ok and first.new_items == 3
    assert not broken.ok and broken.error_kind == "not_a_feed" and broken.new_items == 0
    assert "not a feed" in (broken.error or "")
    assert back.ok and back.new_items == 0  # nothing lost, nothing re-alerted
    assert rows(config, "SELECT COUNT(*) FROM items") == [(3,)]
    row = feed_row(config, site.url("/feed"))
    assert row["consecutive_failures"] == 0 and row["last_error_kind"] == "not_a_feed"


def test_a10_etag_churn_does_not_make_items_new_again(
        tmp_path: Path, hostile: HostileServer) -> None:
    """A10: a random ETag on every response; dedup is by item, so nothing is new twice."""
    config = pipeline_config(tmp_path, [hostile.url("/etag-churn")])
    pipeline = build(config)

    async def scenario() -> list[PollOutcome]:
        return [await pipeline.poll(config.feeds[0], force=True) for _ in range(3)]

    hostile.reset()
    outcomes = run(pipeline, scenario())
    assert all(o.ok and not o.not_modified for o in outcomes)
    assert [o.new_items for o in outcomes] == [2, 0, 0]
    sent = [r.headers.get("if-none-match") for r in hostile.requests]
    assert sent[0] is None and sent[1] and sent[2] and sent[1] != sent[2]  # it did churn
    assert rows(config, "SELECT COUNT(*) FROM items") == [(2,)]


@pytest.mark.parametrize("case", ["image/png", "no content-type", "duplicate headers",
                                  "content-length too small"])
def test_a12_odd_headers_parse_the_bytes_or_fail_cleanly(
        tmp_path: Path, site: Site, hostile: HostileServer, case: str) -> None:
    """A12 Also: a wrong or missing Content-Type still parses; duplicate headers parse;
    a Content-Length smaller than the body is a clean per-feed error, no partial items."""
    if case == "image/png":
        site.routes["/feed"] = feed_of(RSS, "image/png")
        url = site.url("/feed")
    elif case == "no content-type":
        site.routes["/feed"] = (200, {}, RSS)
        url = site.url("/feed")
    else:
        url = hostile.url("/dup-headers" if case == "duplicate headers" else "/short-length")
    config = pipeline_config(tmp_path, [url])
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    if case == "content-length too small":
        assert not outcome.ok and outcome.error_kind == "connection"
        assert rows(config, "SELECT COUNT(*) FROM items") == [(0,)]
        assert feed_row(config, url)["consecutive_failures"] == 1
    else:
        assert outcome.ok and outcome.new_items == 2, outcome.summary()
        titles = {r[0] for r in rows(config, "SELECT title FROM items")}
        assert titles == {"First item", "Second item"}


# --- B. SSRF through the pipeline and the config ---------------------------------------------


def test_b13_internal_item_links_are_refused_and_the_item_is_matched_on_feed_text(
        tmp_path: Path, site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """B13: links to metadata, loopback (the canary), [::1] and 10/8: no page fetch,
    "blocked non-public address" logged, item stored and matched on the feed text."""
    with Canary() as canary:
        links = ["http://169.254.169.254/latest/meta-data/", canary.url("/"),
                 f"http://[::1]:{canary.port}/", "http://10.0.0.5/"]
        site.routes["/feed"] = feed_of(rss([
            {"title": f"{MATCHING_TITLE} ({n})", "description": f"{MATCHING_TITLE}. Part {n}.",
             "link": link, "guid": f"g{n}"} for n, link in enumerate(links)]))
        # The feed itself is an intranet feed (allow_private); its links never are.
        feed = FeedConfig(url=site.url("/feed"), allow_private=True)
        config = pipeline_config(tmp_path, [feed], allow_networks=(), fetch_articles=True)
        pipeline = build(config, real_matching=True)
        with caplog.at_level(logging.INFO, logger="monitor.runtime.pipeline"):
            outcome = run(pipeline, pipeline.poll(feed, force=True))
        time.sleep(0.2)
        assert canary.hits == []
    assert outcome.ok and outcome.new_items == 4
    assert [r.path for r in site.requests] == ["/feed"]
    assert caplog.text.count("blocked non-public address") == 4
    sources = rows(config, "SELECT text_source, page_error FROM articles")
    assert len(sources) == 4
    assert all(src == "summary" and "blocked" in (err or "") for src, err in sources)
    matched = rows(config, "SELECT COUNT(DISTINCT article_id) FROM matches")[0][0]
    assert matched == 4  # matched on the feed text alone


def test_b18_a_config_feed_on_an_internal_address_needs_allow_private(
        make_config: ConfigFactory, site: Site) -> None:
    """B18 Also: an internal feed URL in the config is refused by default; the per-feed
    ``allow_private: true`` escape hatch lets it through; ``file:`` is refused even then."""
    for path in ("/plain.xml", "/private.xml"):
        site.routes[path] = feed_of(RSS)
    plain, private = site.url("/plain.xml"), site.url("/private.xml")
    public_only = {"allow_networks": [], "fetch_articles": False}  # the default allow-list
    config = make_config.load(feeds=[plain, {"url": private, "allow_private": True}],
                              fetch=public_only, environ={})
    pipeline = build(config)

    async def scenario() -> list[PollOutcome]:
        return [await pipeline.poll(f, force=True) for f in config.feeds]

    refused, allowed = run(pipeline, scenario())
    assert not refused.ok and refused.error_kind == "blocked"
    assert "blocked non-public address" in (refused.error or "")
    assert feed_row(config, plain)["consecutive_failures"] == 1
    assert allowed.ok and allowed.new_items == 2
    assert [r.path for r in site.requests] == ["/private.xml"]
    with pytest.raises(ConfigErrors) as caught:
        make_config.load(feeds=[{"url": "file:///etc/passwd", "allow_private": True}],
                         fetch=public_only, environ={})
    assert [e.key for e in caught.value.errors] == ["feeds.0.url"]


def test_b18_the_port_allow_list_from_the_config_blocks_other_ports(
        tmp_path: Path, make_config: ConfigFactory, site: Site) -> None:
    """B18 Also: ``fetch.allowed_ports: [80, 443, 8080, 8443]`` refuses any other port
    before connecting; the same feed passes once its port is listed (the control)."""
    site.routes["/feed.xml"] = feed_of(RSS)
    url = site.url("/feed.xml")
    refused_cfg = make_config.load(database="t.db", feeds=[url], environ={}, fetch={
        "fetch_articles": False, "allowed_ports": [80, 443, 8080, 8443]})  # 127.0.0.0/8 allowed
    pipeline = build(refused_cfg)
    outcome = run(pipeline, pipeline.poll(refused_cfg.feeds[0], force=True))
    assert not outcome.ok and outcome.error_kind == "blocked" and "port" in (outcome.error or "")
    assert site.requests == []
    (tmp_path / "t.db").unlink()
    allowed_cfg = make_config.load(database="t.db", feeds=[url], environ={}, fetch={
        "fetch_articles": False, "allowed_ports": [80, 443, site.port]})
    pipeline = build(allowed_cfg)
    assert run(pipeline, pipeline.poll(allowed_cfg.feeds[0], force=True)).ok


# --- C. feed content ----------------------------------------------------------------------


def test_c26_odd_dates_expire_by_first_seen_and_an_old_date_still_alerts(
        tmp_path: Path, site: Site) -> None:
    """C26: items are kept and pruned by ``first_seen``, not by their claimed date (2100
    or 1970); a new item dated 1970 is still matched and alerted."""
    site.routes["/dates"] = feed_of(rss([
        {"title": "Future", "guid": "f", "description": "x", "pubDate": "Fri, 01 Jan 2100 00:00:00 GMT"},
        {"title": "Epoch", "guid": "e", "description": "x", "pubDate": "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"title": "Garbage", "guid": "g", "description": "x", "pubDate": "the day after tomorrow"},
    ]))
    config = pipeline_config(tmp_path, [site.url("/dates")])
    weeks_ago = datetime.now(UTC) - timedelta(days=40)
    with time_machine.travel(weeks_ago, tick=True):
        pipeline = build(config, real_matching=True)
        first = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert first.ok and first.new_items == 3
    site.routes["/dates"] = feed_of(cdata_feed(MATCHING_TITLE, "new-1970",
                                               "Thu, 01 Jan 1970 00:00:00 GMT"))
    pipeline = build(config, real_matching=True)
    second = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert second.ok and second.new_items == 1
    assert second.alerts == 2  # the 1970 date did not drop the new item
    stored = {guid.rsplit("/", 1)[-1]: published
              for guid, published in rows(config, "SELECT guid, published FROM items")}
    assert stored["new-1970"].startswith("1970-01-01")  # stored as given
    report = maintain(pipeline.storage.ops, ServiceSettings(body_retention=30 * 86400.0), idle=False)
    assert report.bodies_pruned == 3
    pruned = dict(rows(config, "SELECT title, body_pruned FROM articles"))
    assert pruned == {"Future": 1, "Epoch": 1, "Garbage": 1, MATCHING_TITLE: 0}
    pipeline.storage.close()


def test_c28_markup_and_control_characters_reach_slack_as_escaped_plain_text(
        make_config: ConfigFactory, site: Site, slack_site: Site) -> None:
    """C28 end to end: a hostile feed title (Slack control sequences, markup, control
    characters) goes feed → parse → match → outbox → apprise → Slack, and arrives as
    escaped plain text: no mention, no channel ping, no disguised link."""
    hostile_title = (f"{MATCHING_TITLE} <!here> <!channel> <@U123ABC> "
                     "<https://evil.test|bank.com> \x01\x07\x1b[31m <script>steal()</script>")
    site.routes["/feed"] = feed_of(cdata_feed(hostile_title))
    config = make_config.load(
        feeds=[site.url("/feed")], channels=[{"name": "slack", "url": SLACK_URL, "rate_limit": 0}],
        fetch={"fetch_articles": False})
    pipeline = build(config, real_matching=True)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.ok and outcome.alerts == 2, outcome.summary()
    report = Deliverer(config.channels, settings()).deliver_due(pipeline.storage.outbox)
    pipeline.storage.close()
    assert report.sent == 2
    payloads = [r.json() for r in slack_site.requests if r.path == SLACK_PATH]
    assert len(payloads) == 2
    for payload in payloads:
        attachment = payload["attachments"][0]
        for text in (attachment["title"], attachment["text"]):
            for sequence in ("<!here", "<!channel", "<@U123", "<https://evil", "|bank.com>",
                             "<script"):
                assert sequence not in text, (sequence, text)
            assert not any(ord(c) < 32 and c not in "\n\t" for c in text), repr(text)
        assert "&lt;!here&gt;" in attachment["title"] or "&lt;!here&gt;" in attachment["text"]
        assert "&lt;@U123ABC&gt;" in attachment["title"] + attachment["text"]


# --- D. articles -----------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "kind"), [("/pdf", "bad_content_type"),
                                              ("/video", "bad_content_type"),
                                              ("/octet", "bad_content_type"),
                                              ("/slow-body", "too_large")])
def test_d29_an_article_url_redirecting_to_a_non_page_is_refused_before_reading(
        hostile: HostileServer, target: str, kind: str) -> None:
    """D29 Also: an article URL that redirects to a PDF, a video, octet-stream, or a
    10 MB body: refused on its Content-Type (or announced length), quickly."""
    policy = EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[hostile.port])
    resolver = StaticResolver({"news.test": "127.0.0.1"})
    url = f"http://news.test:{hostile.port}/redirect-to?url={target}"
    out, elapsed = transport_fetch(url, policy=policy, resolver=resolver, kind="page")
    expect_error(out, kind)
    assert elapsed < 1.5


# --- E. configuration -----------------------------------------------------------------------


BAD_SLACK_URLS = {
    "slack-missing-third-token": "slack://TBADSECRET/BBADSECRET",
    "truncated-hooks-url": "https://hooks.slack.com/services/TBADSECRET/BBADSECRET",
    "truncated-hooks-path": "https://hooks.slack.com/servi",
}


@pytest.mark.parametrize("name", list(BAD_SLACK_URLS))
def test_e36_a_truncated_slack_url_fails_fast_with_a_masked_error_even_at_debug(
        make_config: ConfigFactory, name: str) -> None:
    """E36: a Slack URL missing its third token, or a truncated hooks.slack.com URL:
    ``check`` and ``run`` refuse to start (exit 2) with the URL masked; nothing of the
    token is logged, at DEBUG either."""
    url = BAD_SLACK_URLS[name]
    path = make_config.write(channels=[{"name": "team", "url": "${TEAM_URL}"}])
    scheme = url.split("://", 1)[0]
    try:
        for command in ("check", "run"):
            started = time.monotonic()
            result = CliRunner().invoke(cli, ["--config", str(path), "--log-level", "debug",
                                              command], env={"TEAM_URL": url})
            assert time.monotonic() - started < 15
            assert result.exit_code == EXIT_CONFIG, (command, result.output)
            assert f"apprise cannot use the URL {scheme}://****" in result.output, result.output
            assert "SECRET" not in result.output and "hooks.slack.com/servi" not in result.output
    finally:
        logging.getLogger().handlers.clear()
    # The same check, in-process, with every apprise record captured at DEBUG.
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    keep = Keep(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        with pytest.raises(ChannelError) as caught:
            Deliverer([ChannelConfig(name="team", url=url)], settings())
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)
    assert "SECRET" not in str(caught.value) and f"{scheme}://****" in str(caught.value)
    assert not any("SECRET" in m or "hooks.slack.com/servi" in m for m in records), records


def test_e37_an_unreadable_or_missing_secrets_file_refuses_to_start(
        tmp_path: Path, make_config: ConfigFactory) -> None:
    """E37: the env_file cannot be read (a directory, absent, or mode 000 for a non-root
    user): the config is refused, naming the file; the daemon does not start."""
    cases: dict[str, Callable[[Path], None]] = {
        "absent": lambda p: None,
        "a directory": lambda p: p.mkdir(),
    }
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        cases["mode 000"] = lambda p: (p.write_text("HOOK=json://127.0.0.1/x\n"), p.chmod(0))  # type: ignore[func-returns-value]
    for n, (label, make) in enumerate(cases.items()):
        env_file = tmp_path / f"secrets{n}.env"
        make(env_file)
        path = make_config.write(name=f"c{n}.yaml", extra={"env_file": env_file.name},
                                 channels=[{"name": "hook", "url": "${HOOK}"}])
        with pytest.raises(ConfigErrors) as caught:
            load_config(path, environ={})
        (error,) = caught.value.errors
        assert "cannot read env_file" in error.message, label
        assert error.path == str(env_file), label
        result = CliRunner().invoke(cli, ["--config", str(path), "run"], env={"HOOK": ""})
        assert result.exit_code == EXIT_CONFIG, (label, result.output)
        assert env_file.name in result.output, (label, result.output)
    logging.getLogger().handlers.clear()


# --- F. delivery ----------------------------------------------------------------------------


def test_f40_a_hung_endpoint_does_not_block_polling(tmp_path: Path, site: Site) -> None:
    """F40: delivery is its own job in a thread: while a send hangs, feeds keep polling."""
    site.routes["/feed.xml"] = feed_of(rss([{"title": "Weather", "guid": "w1", "description": "Sun"}]))
    entered, release = threading.Event(), threading.Event()

    def hang(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        entered.set()
        release.wait(6)
        return 200, {"Content-Type": "application/json"}, b"{}"

    with Site(routes={"/hook": hang}) as hook:
        config = write_config(tmp_path, [site.url("/feed.xml")], interval="1s", channels=[
            {"name": "hook", "url": f"json://127.0.0.1:{hook.port}/hook", "rate_limit": 0}])
        store = open_storage(tmp_path / "state" / "test.db")
        add_alert(store, "hook")
        store.close()
        notifier = RecordingNotifier()

        def feed_polls() -> int:
            return sum(r.path == "/feed.xml" for r in site.requests)

        async def scenario(daemon: Daemon) -> None:
            await sleep_until(entered.is_set, 15, "the delivery to hang")
            hung_at, before = time.monotonic(), feed_polls()
            # 1 s polls: two within 5 s of a 6 s hang, even with jitter on a loaded machine.
            while feed_polls() - before < 2 and time.monotonic() - hung_at < 5.0:
                await asyncio.sleep(0.1)
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - hung_at)))  # heartbeat window
            during = feed_polls() - before
            pings = notifier.pings(hung_at, time.monotonic())
            release.set()
            assert during >= 2, f"{during} polls while the delivery hung"
            assert len(pings) >= 4, "the heartbeat stopped while the delivery hung"

        try:
            run_daemon(config, notifier, scenario)
        finally:
            release.set()


def test_f42_debug_logging_never_prints_the_slack_webhook(
        tmp_path: Path, slack_site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """F42: with logging at DEBUG, a Slack send logs nothing of the webhook tokens,
    even when the redaction filter does not know them (apprise and urllib3 pinned)."""
    store = open_storage(tmp_path / "t.db")
    add_alert(store, "slack")
    try:
        setup_logging("debug", "text", secrets=[])  # no known secrets: the pin alone
        assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
        logging.getLogger("monitor.test").debug("debug logging is on")
        deliverer = Deliverer([ChannelConfig(name="slack", url=SLACK_URL, rate_limit=0)], settings())
        assert deliverer.deliver_due(store.outbox).sent == 1
        assert logging.getLogger("apprise").getEffectiveLevel() >= logging.INFO
        assert logging.getLogger("urllib3").getEffectiveLevel() >= logging.INFO
    finally:
        logging.getLogger().handlers.clear()
        logging.getLogger().setLevel(logging.WARNING)
        store.close()
    err = capsys.readouterr().err
    assert "debug logging is on" in err  # DEBUG really reached the output
    assert [r.path for r in slack_site.requests] == [SLACK_PATH]
    for token in ("T1ABCDEFG", "B1ABCDEFG", "abcdefghijklmnopqrstuvwx"):
        assert token not in err, err


# --- G. runtime -----------------------------------------------------------------------------


def test_g48_every_store_connection_is_wal_with_full_sync(tmp_path: Path, site: Site) -> None:
    """G48 (power loss can only be simulated): the connections the daemon writes with
    use WAL and ``synchronous=FULL``, also after a poll's lazy (NORMAL) commit."""
    site.routes["/feed.xml"] = feed_of(RSS)
    config = load_config(write_config(tmp_path, [site.url("/feed.xml")]))
    runtime = Runtime.build(config)
    try:
        for store in (runtime.storage, runtime.delivery_storage):
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        outcome = asyncio.run(runtime.pipeline.poll(config.feeds[0], force=True))
        assert outcome.ok and outcome.new_items == 2
        assert runtime.storage.db.execute("PRAGMA synchronous").fetchone()[0] == 2
        # A commit is durable for other connections (and the WAL is the file of record).
        assert Path(f"{config.database_path()}-wal").exists()
        other = sqlite3.connect(config.database_path())
        assert other.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 2
        other.close()
    finally:
        asyncio.run(runtime.aclose())


def _clock_config(tmp_path: Path, site: Site) -> Path:
    site.routes["/feed.xml"] = feed_of(rss([{"title": "Weather", "guid": "w", "description": "x"}]))
    return write_config(tmp_path, [site.url("/feed.xml")], interval="1s")


def test_g49_a_forward_clock_jump_runs_each_job_once_not_a_catch_up_storm(
        tmp_path: Path, site: Site) -> None:
    """G49: the wall clock jumps 6 hours ahead (VM resume): ~21,600 missed 1 s ticks
    are coalesced; polling and the heartbeat just carry on at their cadence."""
    config = _clock_config(tmp_path, site)
    notifier = RecordingNotifier()
    state: dict[str, Any] = {}

    def prepare(daemon: Daemon) -> None:
        state["record"], _ = count_polls(daemon)

    async def scenario(daemon: Daemon) -> None:
        record: list[tuple[str, float, float]] = state["record"]
        await sleep_until(lambda: len(record) >= 2, 15, "two polls")
        with time_machine.travel(datetime.now(UTC) + timedelta(hours=6), tick=True):
            assert daemon.scheduler is not None
            daemon.scheduler.wakeup()
            jumped, before, requests = time.monotonic(), len(record), len(site.requests)
            await asyncio.sleep(3.0)
            after = len(record) - before
            assert 1 <= after <= 5, f"{after} polls in 3 s after the jump"
            assert len(site.requests) - requests <= 5
            assert 3 <= len(notifier.pings(jumped)) <= 8

    run_daemon(config, notifier, scenario, prepare)


def test_g49_a_backward_clock_jump_keeps_polling_and_feeding_the_watchdog(
        tmp_path: Path, site: Site) -> None:
    """G49: the wall clock steps back one hour (NTP): polls and pings continue."""
    config = _clock_config(tmp_path, site)
    notifier = RecordingNotifier()

    async def scenario(daemon: Daemon) -> None:
        await sleep_until(lambda: len(site.requests) >= 2, 15, "two polls")
        with time_machine.travel(datetime.now(UTC) - timedelta(hours=1), tick=True):
            assert daemon.scheduler is not None
            daemon.scheduler.wakeup()
            jumped, requests = time.monotonic(), len(site.requests)
            await asyncio.sleep(4.0)
            assert len(site.requests) - requests >= 2, "no poll after the clock stepped back"
            assert len(notifier.pings(jumped)) >= 4, "no watchdog ping after the step back"

    run_daemon(config, notifier, scenario)


def test_g49_a_poll_overrunning_its_interval_never_piles_up(
        tmp_path: Path, hostile: HostileServer) -> None:
    """G49 Also: each poll takes 2.5 s against a 1 s interval: never two polls of one feed
    at once (max_instances=1), no burst afterwards, and the watchdog is still fed."""
    urls = [hostile.url(f"/hold?ms=2500&n={n}") for n in range(3)]
    config = write_config(tmp_path, urls, interval="1s")
    notifier = RecordingNotifier()
    state: dict[str, Any] = {}

    def prepare(daemon: Daemon) -> None:
        state["record"], state["peak"] = count_polls(daemon)

    async def scenario(daemon: Daemon) -> None:
        started = time.monotonic()
        await asyncio.sleep(6.0)
        assert notifier.pings(started + 1) and len(notifier.pings(started)) >= 8
        assert not any("stalled" in s for s in notifier.statuses())

    hostile.reset()
    run_daemon(config, notifier, scenario, prepare)
    record: list[tuple[str, float, float]] = state["record"]
    assert set(state["peak"]) == set(urls) and max(state["peak"].values()) == 1, state["peak"]
    assert len(record) >= 3  # the polls did run (and overran)
    for n in range(3):
        arrivals = sorted(r.at for r in hostile.requests if r.query.get("n") == [str(n)])
        assert 1 <= len(arrivals) <= 3, arrivals  # 6 s / 2.5 s per poll, never a burst
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert all(g >= 2.4 for g in gaps), gaps


def test_g50_a_stalled_poll_stops_the_watchdog_while_the_loop_still_runs(
        tmp_path: Path, hostile: HostileServer) -> None:
    """G50: a poll stuck longer than ``poll_stall_timeout`` (the scheduler is wedged on it,
    the event loop is not): WATCHDOG=1 stops and STATUS says why."""
    hostile.reset()
    config = write_config(tmp_path, [hostile.url("/slowloris-headers")], interval="1s",
                          service={"poll_stall_timeout": "1s"})
    notifier = RecordingNotifier()

    async def scenario(daemon: Daemon) -> None:
        await sleep_until(lambda: hostile.paths(), 15, "the stuck poll to start")
        stuck_at = hostile.requests[0].at
        await asyncio.sleep(3.5)
        assert notifier.pings(0, stuck_at + 0.5), "no ping before the stall (control)"
        late = notifier.pings(stuck_at + 1.6)
        assert late == [], f"{len(late)} pings while the poll was stuck"
        assert any("stalled" in s and "has been running" in s for s in notifier.statuses())
        assert daemon.progress.inflight == 1

    run_daemon(config, notifier, scenario)
