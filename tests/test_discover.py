"""Feed autodiscovery (monitor/ingest/discover.py), ``newsmon feeds discover`` and ``newsmon feeds``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result

from monitor.cli.app import cli
from monitor.config import FetchSettings
from monitor.ingest.discover import discover, feed_links
from monitor.ingest.fetch import Fetcher
from monitor.ingest.netguard import EgressPolicy
from tests.helpers.configs import ConfigFactory
from tests.helpers.hostile import Canary
from tests.helpers.servers import Site, rss

PAGE = b"""<!doctype html><html><head><title>Site</title>
<base href="/news/">
<link rel="stylesheet" href="/s.css">
<link rel="alternate" type="application/rss+xml" title="All news" href="rss.xml">
<link rel="Alternate Feed" type="application/atom+xml; charset=utf-8" href="/atom.xml">
<link rel="alternate" type="application/feed+json" title="JSON" href="https://127.0.0.1:1/f.json">
<link rel="alternate" type="text/html" href="/other-language">
<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
<link rel="alternate" type="application/rss+xml" title="again" href="/news/rss.xml">
</head><body><a href="/feed">not a link tag</a></body></html>"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fetcher() -> Fetcher:
    return Fetcher(timeout=10, policy=EgressPolicy(allowed_networks=("127.0.0.0/8",)))


async def _discover(url: str, **kw: bool) -> list:
    async with fetcher() as f:
        return await discover(url, f, **kw)


def test_feed_links_reads_link_tags_with_base_and_types() -> None:
    found = feed_links(PAGE, "http://127.0.0.1:8000/index.html")
    assert [(f.url, f.kind, f.title) for f in found] == [
        ("http://127.0.0.1:8000/news/rss.xml", "rss", "All news"),
        ("http://127.0.0.1:8000/atom.xml", "atom", None),
        ("https://127.0.0.1:1/f.json", "json", "JSON"),
    ]
    assert feed_links(b"", "http://127.0.0.1/") == []
    assert feed_links(b"\x00\xff garbage", "http://127.0.0.1/") == []


def test_discover_on_a_page_a_feed_and_by_guessing(site: Site) -> None:
    site.routes["/"] = (200, {"Content-Type": "text/html"}, PAGE)
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                rss([{"title": "a", "guid": "1"}], title="The feed"))
    site.routes["/bare"] = (200, {"Content-Type": "text/html"}, b"<html><body>no links</body>")
    site.routes["/feed"] = (200, {"Content-Type": "text/html"}, b"<html>a page, not a feed</html>")
    page = asyncio.run(_discover(site.url("/")))
    assert [f.url for f in page] == [site.url("/news/rss.xml"), site.url("/atom.xml"),
                                     "https://127.0.0.1:1/f.json"]
    assert all(f.source == "link" for f in page)
    itself = asyncio.run(_discover(site.url("/feed.xml")))
    assert [(f.url, f.title, f.source) for f in itself] == [(site.url("/feed.xml"), "The feed",
                                                             "self")]
    guessed = asyncio.run(_discover(site.url("/bare")))
    assert [(f.url, f.source) for f in guessed] == [(site.url("/feed.xml"), "guess")]
    assert asyncio.run(_discover(site.url("/bare"), guess=False)) == []


def test_discover_respects_the_egress_policy() -> None:
    with Canary() as canary:
        async def run() -> None:
            async with Fetcher(timeout=5, policy=EgressPolicy()) as f:  # public only
                try:
                    await discover(canary.url("/"), f)
                except Exception as exc:
                    assert getattr(exc, "kind", None) == "blocked"
                else:
                    raise AssertionError("a loopback URL was fetched")

        asyncio.run(run())
        assert canary.hits == []


def write_config(tmp_path: Path, urls: list[str]) -> Path:
    """No rules (polls store items, match nothing); a failing feed counts as failing at once."""
    return ConfigFactory(tmp_path).write(database="test.db", feeds=urls, rules=[],
                                         fetch={"failing_notice_after": "0s"})


def test_discover_command(tmp_path: Path, site: Site) -> None:
    site.routes["/"] = (200, {"Content-Type": "text/html"}, PAGE)
    config = write_config(tmp_path, [])
    result = invoke("--config", str(config), "feeds", "discover", site.url("/"), "--json")
    assert result.exit_code == 0, result.output
    assert next(f["url"] for f in json.loads(result.output)) == site.url("/news/rss.xml")
    site.routes["/none"] = (200, {"Content-Type": "text/html"}, b"<html></html>")
    none = invoke("--config", str(config), "feeds", "discover", site.url("/none"), "--no-guess")
    assert none.exit_code == 1 and "no feed found" in none.output
    dead = invoke("--config", str(config), "feeds", "discover", site.url("/404"))
    assert dead.exit_code == 1 and "http_status" in dead.output
    assert invoke("--config", str(config), "feeds", "discover", "ftp://x").exit_code == 2
    added = invoke("--config", str(config), "feeds", "discover", site.url("/"), "--add")
    assert added.exit_code == 0 and "3 added" in added.output
    assert site.url("/atom.xml") in config.read_text(encoding="utf-8")


def test_feeds_lists_health_as_tsv_and_json_and_exits_1_when_failing(
        tmp_path: Path, site: Site) -> None:
    site.routes["/ok.xml"] = (200, {"Content-Type": "application/rss+xml"},
                              rss([{"title": "a", "guid": "1"}]))
    site.routes["/bad.xml"] = (500, {"Content-Type": "text/plain"}, b"boom\nline two")
    config = write_config(tmp_path, [site.url("/ok.xml"), site.url("/bad.xml")])
    before = invoke("--config", str(config), "feeds")
    assert before.exit_code == 0
    lines = before.output.splitlines()
    assert lines[0].split("\t")[:3] == ["name", "url", "health"]
    assert [line.split("\t")[2] for line in lines[1:]] == ["new", "new"]
    assert invoke("--config", str(config), "once").exit_code == 1
    listed = invoke("--config", str(config), "feeds")
    assert listed.exit_code == 1  # a feed is failing
    rows = [line.split("\t") for line in listed.output.splitlines()]
    assert all(len(r) == len(rows[0]) for r in rows)  # one line per feed, even with \n errors
    as_json = json.loads(invoke("--config", str(config), "feeds", "--json").output)
    ok, bad = as_json
    assert ok["health"] == "ok" and ok["failures"] == 0 and ok["last_success"]
    assert ok["next_poll"] and ok["interval_s"] >= FetchSettings().min_interval
    assert bad["health"] == "failing" and bad["failures"] == 1
    assert bad["last_error_kind"] == "http_status" and "HTTP 500" in bad["last_error"]


def test_feeds_table_on_a_terminal(tmp_path: Path, monkeypatch: object) -> None:
    import monitor.cli.feeds as cli_feeds

    config = write_config(tmp_path, ["http://127.0.0.1:1/feed"])
    monkeypatch.setattr(cli_feeds, "is_terminal", lambda stream: True)  # type: ignore[attr-defined]
    result = invoke("--config", str(config), "feeds")
    assert result.exit_code == 0
    assert "1 feeds" in result.output and "health" in result.output and "\t" not in result.output
