"""The workspace against the issue's list, over HTTP on a database filled by the real
pipeline from loopback feeds: search filters (topic, feed, date range, matched only),
ranking, highlighting and pagination; the feeds page (health, last success, next poll, the
error); the channels page (dead letters from a real failed delivery, the last error); and no
secret (a channel URL's or a feed URL's ``${VAR}``) on any page."""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.config import Config, FeedConfig
from monitor.delivery.deliverer import Deliverer
from monitor.storage import open_storage
from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import build, rows, run
from tests.helpers.servers import Site, rss
from tests.helpers.web import WebServer

FEED_SECRET = "feedkey-7f3a9c2e1b"
HOOK_SECRET = "hooktoken-51d0e8aa42"
TOWNS = ["Kherson", "Zaporizhzhia", "Kharkiv", "Donetsk", "Luhansk", "Mykolaiv", "Odesa", "Sumy",
         "Chernihiv", "Bakhmut", "Avdiivka", "Izium", "Kupiansk", "Lyman", "Pokrovsk", "Toretsk",
         "Vuhledar", "Marinka", "Orikhiv", "Huliaipole", "Nikopol", "Enerhodar"]
OTHER = [("Football rivals call a ceasefire in their long feud", "The two clubs' fans agreed a"
          " ceasefire before the derby, the league said."),
         ("Neighbours' hedge ceasefire ends in court", "A ceasefire over a garden hedge ended when"
          " one neighbour sued."),
         ("Council budget talks continue", "The council will meet again on Thursday.")]


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def _feed(site: Site, path: str, items: list[dict[str, str]], title: str) -> None:
    site.routes[path] = (200, {"Content-Type": "application/rss+xml"}, rss(items, title))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Site]]:
    """Three feeds: 22 war reports behind a URL with a secret key (no feed name, so the URL
    is what a page could show), 3 other items, one feed that answers 500; a channel whose
    URL holds a secret and whose webhook refuses every message (a real dead letter)."""
    folder = tmp_path_factory.mktemp("review")
    with Site() as site:
        war = [{"title": f"Russia and Ukraine agree ceasefire near {town} after talks",
                "link": site.url(f"/war/{n}"), "guid": f"war-{n}",
                "description": f"Negotiators from Russia and Ukraine agreed a ceasefire near {town}"
                               f" after talks in Istanbul, the Kremlin and officials in Kyiv said."}
               for n, town in enumerate(TOWNS)]
        _feed(site, "/war.xml", war, "War desk")
        _feed(site, "/other.xml", [{"title": t, "link": site.url(f"/other/{n}"), "guid": f"o-{n}",
                                    "description": d} for n, (t, d) in enumerate(OTHER)], "Other")
        site.routes["/broken.xml"] = (500, {"Content-Type": "text/plain"}, b"upstream exploded")
        site.routes[f"/hook/{HOOK_SECRET}"] = (400, {"Content-Type": "text/plain"}, b"bad request")
        feeds = [FeedConfig(url=site.url("/war.xml") + "?key=${FEED_KEY}"),
                 FeedConfig(url=site.url("/other.xml"), name="other-news"),
                 FeedConfig(url=site.url("/broken.xml"), name="broken-feed")]
        hook = f"json://127.0.0.1:{site.url('/').split(':')[2].rstrip('/')}/hook/${{HOOK_TOKEN}}"
        config = ConfigFactory(folder).load(
            environ={"FEED_KEY": FEED_SECRET, "HOOK_TOKEN": HOOK_SECRET},
            feeds=feeds, channels=[{"name": "desk", "url": hook}],
            fetch={"fetch_articles": False}, delivery={"max_attempts": 1, "retry_base": "1s"})
        assert FEED_SECRET in config.feeds[0].url and HOOK_SECRET in config.channels[0].url
        pipeline = build(config, real_matching=True)

        async def poll_all() -> list[Any]:
            return [await pipeline.poll(feed, force=True) for feed in config.feeds]

        try:
            outcomes = run(pipeline, poll_all())
        finally:
            pipeline.storage.close()
        assert [o.ok for o in outcomes] == [True, True, False], outcomes
        # The real deliverer: the webhook refuses (400), max_attempts 1: dead letters.
        storage = open_storage(config.database_path())
        try:
            report = Deliverer(config.channels, config.delivery).deliver_due(storage.outbox)
        finally:
            storage.close()
        assert report.dead >= 1, report
        yield config, site


@pytest.fixture(scope="module")
def server(filled: tuple[Config, Site]) -> Iterator[WebServer]:
    with WebServer(filled[0]) as srv:
        yield srv


def results(server: WebServer, **params: str) -> tuple[str, list[str], str]:
    """(the count line, the result titles as text, the page) of one search."""
    status, _, body = get(server.url + "/search?" + urllib.parse.urlencode(params))
    assert status == 200, body[:300]
    count = re.search(r'data-testid="result-count">([^<]*)', body)
    titles = [html.unescape(re.sub(r"<[^>]+>", "", t))
              for t in re.findall(r'class="title" href="[^"]+">(.*?)</a>', body)]
    return (count.group(1) if count else ""), titles, body


def test_search_pages_highlights_and_ranks(server: WebServer, filled: tuple[Config, Site]) -> None:
    stored = rows(filled[0], "SELECT count(*) FROM articles WHERE title LIKE '%ceasefire%'")[0][0]
    assert stored == len(TOWNS) + 2
    count, first, body = results(server, q="ceasefire")
    assert count.startswith(f"{stored} results") and "page 1 of 2" in count
    assert len(first) == 20 and "<mark>ceasefire</mark>" in body
    assert 'rel="next" href="/search?q=ceasefire&amp;page=2"' in body
    _, second, body2 = results(server, q="ceasefire", page="2")
    assert len(second) == stored - 20 and not set(first) & set(second)
    assert 'rel="prev"' in body2 and 'rel="next"' not in body2
    # Ranked: a town named in the query ranks its article first (title weight).
    _, ranked, _ = results(server, q="ceasefire OR Enerhodar")
    assert "Enerhodar" in ranked[0]


def test_search_filters(server: WebServer, filled: tuple[Config, Site]) -> None:
    config = filled[0]
    matched = rows(config, "SELECT count(DISTINCT a.id) FROM articles a JOIN matches m ON m.article_id = a.id"
                           " WHERE a.title LIKE '%ceasefire%'")[0][0]
    topical = rows(config, "SELECT count(DISTINCT a.id) FROM articles a JOIN matches m ON m.article_id = a.id"
                           " WHERE a.title LIKE '%ceasefire%' AND m.topic = 'ceasefire'")[0][0]
    assert 0 < topical <= matched < len(TOWNS) + 2
    count, titles, _ = results(server, q="ceasefire", matched="1")
    assert count.startswith(f"{matched} result")
    assert not any("Football" in t or "hedge" in t for t in titles)
    count, _, _ = results(server, q="ceasefire", topic="ceasefire")
    assert count.startswith(f"{topical} result")
    count, titles, _ = results(server, q="ceasefire", feed="other-news")
    assert count.startswith("2 results") and {t.split()[0] for t in titles} == {"Football", "Neighbours'"}
    # The nameless feed is chosen by position: its URL (with the key) is never a form value.
    count, titles, body = results(server, q="ceasefire", feed="#0")
    assert count.startswith(f"{len(TOWNS)} results") and all("Russia" in t for t in titles)
    assert '<option value="#0" selected>' in body
    today = datetime.now(UTC).date()
    count, _, _ = results(server, q="ceasefire", since=today.isoformat(), until=today.isoformat())
    assert count.startswith(f"{len(TOWNS) + 2} results")
    for span in ({"since": (today + timedelta(days=1)).isoformat()},
                 {"until": (today - timedelta(days=1)).isoformat()}):
        count, titles, _ = results(server, q="ceasefire", **span)
        assert count.startswith("0 results") and titles == [], span


def test_the_feeds_page_shows_health_next_poll_and_the_error(server: WebServer,
                                                              filled: tuple[Config, Site]) -> None:
    config = filled[0]
    _, _, body = get(server.url + "/feeds")
    broken = body[body.index("broken-feed"):].split("</tr>", 1)[0]
    stored = rows(config, "SELECT next_poll_at, consecutive_failures FROM feeds WHERE url = ?",
                  config.feeds[2].url)[0]
    assert stored[1] == 1 and ">1</td>" in broken
    assert stored[0][:16].replace("T", " ") in broken  # the next poll, as stored
    assert "backoff" in broken and "500" in broken  # why, and the last error
    healthy = body[body.index("other-news"):].split("</tr>", 1)[0]
    assert "ok" in healthy or "new" in healthy
    last_success = rows(config, "SELECT last_success_at FROM feeds WHERE url = ?", config.feeds[1].url)[0][0]
    assert last_success[:16].replace("T", " ") in healthy


def test_the_channels_page_shows_dead_letters_and_the_last_error(server: WebServer,
                                                                 filled: tuple[Config, Site]) -> None:
    config = filled[0]
    dead = rows(config, "SELECT count(*) FROM alerts WHERE channel = 'desk' AND status = 'dead'")[0][0]
    assert dead >= 1
    _, _, body = get(server.url + "/channels")
    row = body[body.index("<strong>desk</strong>"):].split("</tr>", 1)[0]
    sent, _pending, dead_cell, state, _, last_error = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert dead_cell == str(dead) and sent == "0"
    assert "failing since" in state
    assert "400" in last_error or "bad request" in last_error.lower(), last_error
    _, _, overview = get(server.url + "/")
    assert "dead letters" in overview and "broken-feed" in overview  # problems on the overview


def test_no_page_shows_a_secret(server: WebServer, filled: tuple[Config, Site]) -> None:
    config = filled[0]
    ids = [a for (a,) in rows(config, "SELECT id FROM articles")]
    pages = ["/", "/search?q=ceasefire", "/search?q=ceasefire&feed=%230", "/feeds", "/channels",
             "/playground", "/stories", "/feeds/all.atom", "/feeds/topic/ceasefire.atom",
             *(f"/article/{a}" for a in ids)]
    for page in pages:
        status, _, body = get(server.url + page)
        assert status == 200, page
        for secret in (FEED_SECRET, HOOK_SECRET):
            assert secret not in body, (page, secret)
    # The secrets are where they belong (the config), so the check above is not vacuous.
    assert FEED_SECRET in config.feeds[0].url and HOOK_SECRET in config.channels[0].url
