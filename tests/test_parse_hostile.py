"""Hostile feed content (docs: shared/spec/hostile-inputs.md, section C, cases 19-28).

Parser-level cases call ``parse_feed`` on bytes; the others go through the real
pipeline (loopback server, real fetcher, storage on a temp file). XXE cases run
a canary listener on 127.0.0.1 that must never be reached.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import FeedConfig
from monitor.ingest import parse
from monitor.ingest.parse import MAX_SUMMARY, MAX_TITLE, FeedParseError, check_expat, parse_feed
from tests.helpers.configs import ConfigFactory
from tests.helpers.feed import (
    MATCHING_TITLE,
    FastProcessor,
    build,
    feed_row,
    notices,
    pipeline_config,
    rows,
    run,
)
from tests.helpers.hostile import Canary
from tests.helpers.paths import REPO
from tests.helpers.servers import Site, rss

URL = "http://127.0.0.1/feed"
HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n'


def doc(items: bytes, *, prolog: bytes = b"", head: bytes = HEAD, title: bytes = b"T") -> bytes:
    return (head + prolog + b'<rss version="2.0"><channel><title>' + title
            + b"</title><link>http://127.0.0.1/</link><description>d</description>"
            + items + b"</channel></rss>")


def item(title: str, guid: str, extra: str = "") -> bytes:
    return f"<item><title>{title}</title><guid>{guid}</guid>{extra}</item>".encode()


def served(site: Site, path: str, body: bytes, ctype: str = "application/rss+xml") -> str:
    site.routes[path] = (200, {"Content-Type": ctype}, body)
    return site.url(path)


# --- 19/20: entity expansion -------------------------------------------------------------

LOLS = "".join(
    f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">' for n in range(2, 10)
)
BILLION_ONE_LINE = doc(item("&lol9;", "x"), prolog=(
    '<!DOCTYPE rss [<!ENTITY lol1 "lol">' + LOLS + "]>\n").encode())
BILLION_MULTI_LINE = doc(item("&lol9;", "x"), prolog=(
    '<!DOCTYPE rss [\n <!ENTITY lol1 "lol">\n' + LOLS.replace("><", ">\n <") + "\n]>\n").encode())
QUADRATIC = doc(item("&big;" * 10_000, "q"), prolog=(
    '<!DOCTYPE rss [<!ENTITY big "' + "x" * 100_000 + '">]>\n').encode())


@pytest.mark.parametrize("body", [BILLION_ONE_LINE, BILLION_MULTI_LINE, QUADRATIC],
                         ids=["billion-laughs-one-line", "billion-laughs-multi-line", "quadratic"])
def test_entity_bombs_fail_fast_with_a_clear_error(body: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(FeedParseError, match="declares XML entities") as err:
        parse_feed(body, url=URL)
    assert time.monotonic() - started < 0.5
    assert err.value.kind == "not_a_feed"


def test_entity_declarations_are_refused_in_utf16_too() -> None:
    body = BILLION_ONE_LINE.replace(b"utf-8", b"utf-16").decode().encode("utf-16")
    with pytest.raises(FeedParseError, match="declares XML entities"):
        parse_feed(body, url=URL)


def _feedparser_in_subprocess(body: bytes, memory_mb: int = 1024) -> dict[str, Any]:
    """feedparser alone (no guard of ours), under an address-space cap and a clock."""
    code = (
        "import json, resource, sys, time, feedparser\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory_mb} << 20, {memory_mb} << 20))\n"
        "t = time.monotonic(); r = feedparser.parse(sys.stdin.buffer.read())\n"
        "print(json.dumps({'seconds': time.monotonic() - t, 'entries': len(r.entries),"
        " 'text': json.dumps(r, default=str)[:200000]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=body, capture_output=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout)


def test_expat_itself_stops_a_one_line_billion_laughs() -> None:
    """Defence in depth: were our prolog guard gone, libexpat >= 2.4 still stops it."""
    result = _feedparser_in_subprocess(BILLION_ONE_LINE)
    assert result["seconds"] < 20
    assert "lollollollollollollollollollol" * 10 not in result["text"]


def test_expat_version_is_checked_at_start_up(monkeypatch: pytest.MonkeyPatch,
                                              make_config: ConfigFactory) -> None:
    check_expat()  # this interpreter's libexpat is recent enough
    monkeypatch.setattr(parse.pyexpat, "version_info", (2, 2, 10))
    with pytest.raises(RuntimeError, match=r"2\.4\.0 or newer"):
        check_expat()
    from monitor.runtime.pipeline import Pipeline
    with pytest.raises(RuntimeError):
        Pipeline(make_config.load(), None, None, None)  # type: ignore[arg-type]


# --- 21: XXE ------------------------------------------------------------------------------


def xxe_documents(canary: Canary) -> dict[str, bytes]:
    base = canary.url("")
    return {
        "external-entity-http": doc(item("&xxe;", "e1"), prolog=(
            f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{base}/xxe">]>\n').encode()),
        "external-entity-file": doc(item("&xxe;", "e2"), prolog=(
            b'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>\n')),
        "parameter-entity": doc(item("pe", "e3"), prolog=(
            f'<!DOCTYPE rss [<!ENTITY % pe SYSTEM "{base}/pe"> %pe;]>\n').encode()),
        "multi-line": doc(item("&xxe;", "e4"), prolog=(
            f'<!DOCTYPE rss [\n  <!ENTITY xxe SYSTEM "{base}/ml">\n]>\n').encode()),
        "external-dtd": doc(item("dtd", "e5"), prolog=(
            f'<!DOCTYPE rss SYSTEM "{base}/dtd">\n').encode()),
    }


def test_xxe_nothing_is_resolved_or_fetched() -> None:
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""
    with Canary() as canary:
        for name, body in xxe_documents(canary).items():
            if name == "external-dtd":
                # No entity declared: parsed, and the DTD is not fetched.
                parsed = parse_feed(body, url=URL)
                assert [i.title for i in parsed.items] == ["dtd"]
            else:
                with pytest.raises(FeedParseError, match="declares XML entities"):
                    parse_feed(body, url=URL)
            # Regression for feedparser/Python upgrades: feedparser alone resolves nothing.
            raw = _feedparser_in_subprocess(body)
            if hostname:
                assert hostname not in raw["text"], name
        time.sleep(0.2)
        assert canary.hits == []


def test_xxe_through_the_pipeline(tmp_path: Path, site: Site) -> None:
    with Canary() as canary:
        docs = xxe_documents(canary)
        urls = [served(site, f"/{name}", body) for name, body in docs.items()]
        config = pipeline_config(tmp_path, urls)
        pipeline = build(config)
        report = run(pipeline, pipeline.run_cycle())
        kinds = {o.url.rsplit("/", 1)[1]: o.error_kind for o in report.outcomes}
        assert kinds == {"external-entity-http": "not_a_feed", "external-entity-file": "not_a_feed",
                         "parameter-entity": "not_a_feed", "multi-line": "not_a_feed",
                         "external-dtd": None}
        time.sleep(0.2)
        assert canary.hits == []


# --- 22: size ---------------------------------------------------------------------------------


def test_a_10_mb_feed_is_refused_by_the_byte_cap(tmp_path: Path, site: Site) -> None:
    body = doc(b"".join(item(f"Item {i}", f"g{i}", "<description>" + "x" * 5000
                             + "</description>") for i in range(2000)))
    assert len(body) > 10_000_000
    config = pipeline_config(tmp_path, [served(site, "/big", body)])
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.error_kind == "too_large"
    assert feed_row(config, config.feeds[0].url)["last_error_kind"] == "too_large"


def test_a_100000_item_feed_processes_only_the_newest_n_quickly(tmp_path: Path, site: Site) -> None:
    body = doc(b"".join(b"<item><title>%d</title><guid>%d</guid></item>" % (i, i)
                        for i in range(100_000)))
    assert len(body) < 5 * 1024 * 1024  # under the byte cap: the parse must bound itself
    config = pipeline_config(tmp_path, [served(site, "/many", body)], max_items_per_poll=200)
    pipeline = build(config)
    started = time.monotonic()
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.ok and outcome.items == 200 and outcome.new_items == 200
    assert time.monotonic() - started < 10
    # Newest first by convention (no dates): the first 200 of the document.
    # (feedparser resolves a bare guid against the feed URL: "7" -> "http://.../7".)
    stored = {r[0].rsplit("/", 1)[-1] for r in rows(config, "SELECT guid FROM items")}
    assert stored == {str(i) for i in range(200)}


def test_a_5_mb_title_and_summary_are_truncated() -> None:
    huge = "A" * (5 * 1024 * 1024 - 2000)
    body = doc(item(huge, "t1") + item("ok", "t2", f"<description>{'b ' * 100_000}</description>"))
    parsed = parse_feed(body, url=URL)
    assert len(parsed.items[0].title) == MAX_TITLE
    assert len(parsed.items[1].summary) <= MAX_SUMMARY


@pytest.mark.parametrize("shape", ["elements", "cdata-divs"])
def test_deep_nesting_is_bounded(shape: str) -> None:
    if shape == "elements":
        extra = "<x>" * 100_000 + "y" + "</x>" * 100_000
    else:
        extra = "<description><![CDATA[" + "<div>" * 50_000 + "deep" + "</div>" * 50_000 \
            + "]]></description>"
    started = time.monotonic()
    parsed = parse_feed(doc(item("Deep", "d", extra)), url=URL)
    assert time.monotonic() - started < 15
    assert [i.title for i in parsed.items] == ["Deep"]


# --- 23: encodings ----------------------------------------------------------------------------


CAFE = "Café crème à Zürich"


@pytest.mark.parametrize("name,body", [
    ("declared-utf8-is-latin1", doc(f"<item><title>{CAFE}</title><guid>c</guid></item>"
                                    .encode("latin-1"))),
    ("bom-contradicts-declaration", b"\xef\xbb\xbf" + doc(
        f"<item><title>{CAFE}</title><guid>c</guid></item>".encode(),
        head=b'<?xml version="1.0" encoding="iso-8859-1"?>\n')),
    ("utf16le-without-bom", doc(f"<item><title>{CAFE}</title><guid>c</guid></item>".encode(),
                                head=b'<?xml version="1.0" encoding="utf-16"?>\n')
     .decode().encode("utf-16-le")),
    ("utf16be-without-bom-or-declaration", doc(
        f"<item><title>{CAFE}</title><guid>c</guid></item>".encode(), head=b"")
     .decode().encode("utf-16-be")),
])
def test_wrong_or_missing_charsets_decode_and_keep_the_guid_stable(name: str, body: bytes) -> None:
    first, second = parse_feed(body, url=URL), parse_feed(body, url=URL)
    assert [i.title for i in first.items] == [CAFE]
    assert first.items[0].guid == second.items[0].guid


def test_a_charset_override_is_reported_as_a_warning() -> None:
    body = doc(f"<item><title>{CAFE}</title><guid>c</guid></item>".encode("latin-1"))
    assert any("windows-1252" in w or "encoding" in w.lower()
               for w in parse_feed(body, url=URL).warnings)


# --- 24/25: duplicates and churn ----------------------------------------------------------------


def test_duplicate_guids_in_one_feed_store_one_item(tmp_path: Path, site: Site) -> None:
    body = rss([{"title": "First", "guid": "same", "link": "http://127.0.0.1/a/1"},
                {"title": "Second", "guid": "same", "link": "http://127.0.0.1/a/2"},
                {"title": "Third", "guid": "other", "link": "http://127.0.0.1/a/3"}])
    config = pipeline_config(tmp_path, [served(site, "/dups", body)])
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.new_items == 2
    assert rows(config, "SELECT COUNT(*) FROM items") == [(2,)]


def test_the_same_story_in_two_feeds_alerts_once(tmp_path: Path, site: Site) -> None:
    story = {"title": MATCHING_TITLE, "description": MATCHING_TITLE,
             "link": "https://news.example/peace-deal?utm_source=feed-a"}
    feed_a = served(site, "/a", rss([{**story, "guid": "a-1"}]))
    feed_b = served(site, "/b", rss([{**story, "guid": "b-77",
                                      "link": "https://news.example/peace-deal?utm_medium=b"}]))
    config = pipeline_config(tmp_path, [feed_a, feed_b])
    pipeline = build(config, real_matching=True)

    async def scenario() -> list[Any]:
        return [await pipeline.poll(f, force=True) for f in config.feeds]

    first, second = run(pipeline, scenario())
    assert first.alerts == 2 and second.alerts == 0  # 2 topics, one channel, once
    assert rows(config, "SELECT COUNT(*) FROM items") == [(2,)]
    assert rows(config, "SELECT COUNT(*) FROM articles") == [(1,)]
    assert rows(config, "SELECT COUNT(*) FROM alerts WHERE kind = 'match'") == [(2,)]


def test_guid_churn_with_tracking_parameters_alerts_at_most_once(tmp_path: Path, site: Site) -> None:
    poll = {"n": 0}

    def churning(handler: Any) -> tuple[int, dict[str, str], bytes]:
        poll["n"] += 1
        link = f"https://news.example/peace-deal?utm_campaign=rss{poll['n']}"
        return 200, {"Content-Type": "application/rss+xml"}, rss([
            {"title": MATCHING_TITLE, "description": MATCHING_TITLE, "link": link, "guid": link}])

    site.routes["/churn"] = churning
    config = pipeline_config(tmp_path, [site.url("/churn")])
    pipeline = build(config, real_matching=True)

    async def scenario() -> list[Any]:
        return [await pipeline.poll(config.feeds[0], force=True) for _ in range(3)]

    outcomes = run(pipeline, scenario())
    assert [o.new_items for o in outcomes] == [1, 0, 0]
    assert rows(config, "SELECT COUNT(*) FROM alerts WHERE kind = 'match'") == [(2,)]


def test_the_churn_circuit_breaker_holds_alerts_and_warns_once(tmp_path: Path, site: Site) -> None:
    poll = {"n": 0}

    def churning(handler: Any) -> tuple[int, dict[str, str], bytes]:
        poll["n"] += 1
        n = poll["n"]
        # Every poll: new ids, new links and new text (a timestamp), the same stories.
        stories = [{"title": f"{MATCHING_TITLE} ({k}) updated {n}",
                    "description": f"{MATCHING_TITLE}. Story {k}, revision {n}.",
                    "link": f"https://news.example/{n}/{k}", "guid": f"{n}-{k}"}
                   for k in range(6)]
        return 200, {"Content-Type": "application/rss+xml"}, rss(stories)

    site.routes["/churn"] = churning
    config = pipeline_config(tmp_path, [site.url("/churn")], churn_polls=2, churn_ratio=0.8,
                         churn_min_items=5)
    pipeline = build(config, real_matching=True)

    async def scenario() -> list[Any]:
        outcomes = [await pipeline.poll(config.feeds[0], force=True) for _ in range(5)]
        stable = rss([{"title": "Calm", "guid": "calm", "description": "calm"}] * 1
                     + [{"title": f"Calm {k}", "guid": f"c{k}", "description": "c"}
                        for k in range(5)])
        site.routes["/churn"] = (200, {"Content-Type": "application/rss+xml"}, stable)
        outcomes += [await pipeline.poll(config.feeds[0], force=True) for _ in range(2)]
        return outcomes

    outcomes = run(pipeline, scenario())
    # Poll 6 brings a new, stable list (all new once more: still held); poll 7 repeats it.
    assert [o.held for o in outcomes] == [False, False, True, True, True, True, False]
    assert [o.alerts > 0 for o in outcomes[:5]] == [True, True, False, False, False]
    held_matches = rows(config, "SELECT COUNT(*) FROM matches m WHERE NOT EXISTS"
                                " (SELECT 1 FROM alerts a WHERE a.match_id = m.id)")
    assert held_matches[0][0] > 0  # matches are kept, only their alerts are held
    titles = [t for _, t in notices(config)]
    url = site.url("/churn")
    assert titles == [f"Feed alerts held: {url}", f"Feed alerts resumed: {url}"]
    assert feed_row(config, url)["alerts_held_since"] is None


# --- 26: dates ---------------------------------------------------------------------------------------


def test_odd_dates_are_stored_as_given_and_never_drop_an_item(tmp_path: Path, site: Site) -> None:
    def body(extra: list[dict[str, str]]) -> bytes:
        return rss([
            {"title": "Future", "guid": "f", "pubDate": "Fri, 01 Jan 2100 00:00:00 GMT"},
            {"title": "Epoch", "guid": "e", "pubDate": "Thu, 01 Jan 1970 00:00:00 GMT"},
            {"title": "Missing", "guid": "m"},
            {"title": "Garbage", "guid": "g", "pubDate": "the day after tomorrow"},
            *extra])

    url = served(site, "/dates", body([]))
    config = pipeline_config(tmp_path, [url])
    pipeline = build(config)

    async def scenario() -> list[Any]:
        first = await pipeline.poll(config.feeds[0], force=True)
        site.routes["/dates"] = (200, {"Content-Type": "application/rss+xml"}, body(
            [{"title": "Old but new", "guid": "o", "pubDate": "Mon, 02 Jan 1995 00:00:00 GMT"}]))
        return [first, await pipeline.poll(config.feeds[0], force=True)]

    first, second = run(pipeline, scenario())
    assert first.new_items == 4 and second.new_items == 1
    stored = dict(rows(config, "SELECT title, published FROM items"))
    assert stored["Future"].startswith("2100-01-01")
    assert stored["Epoch"].startswith("1970-01-01")
    assert stored["Missing"] is None and stored["Garbage"] is None
    assert stored["Old but new"].startswith("1995-01-02")
    last_new = feed_row(config, url)["last_new_at"]
    assert last_new is not None and last_new <= datetime.now(UTC).isoformat()


def test_a_future_date_does_not_keep_an_item_on_top_forever() -> None:
    now = datetime.now(UTC)
    fmt = "%a, %d %b %Y %H:%M:%S GMT"
    body = rss([
        {"title": "Spam from 2100", "guid": "s", "pubDate": "Fri, 01 Jan 2100 00:00:00 GMT"},
        *({"title": f"Real {k}", "guid": f"r{k}",
           "pubDate": (now + timedelta(minutes=5) - timedelta(hours=k)).strftime(fmt)}
          for k in range(3))])
    parsed = parse_feed(body, url=URL, max_items=2, now=now)
    assert "Real 0" in [i.title for i in parsed.items]  # it was 5 min in the future, clamped


# --- 27: links -------------------------------------------------------------------------------------


def test_missing_relative_and_guid_links(tmp_path: Path, site: Site) -> None:
    site.routes["/a/relative"] = (200, {"Content-Type": "text/html"}, b"<p>page</p>")
    body = doc(
        item("No link", "6")
        + item("Relative", "r", "<link>/a/relative</link>")
        + item("Guid not a permalink", "https://news.example/p/1",
               "").replace(b"<guid>", b'<guid isPermaLink="false">')
        + item("Guid permalink", "https://news.example/p/2")
        + item("Script link", "j", "<link>javascript:alert(1)</link>"))
    url = served(site, "/links", body)
    config = pipeline_config(tmp_path, [url], fetch_articles=True)
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.new_items == 5
    assert isinstance(pipeline.processor, FastProcessor)
    links = {s.item.title: s.item.link for s in pipeline.processor.seen}
    assert links == {"No link": None, "Relative": site.url("/a/relative"),
                     "Guid not a permalink": None, "Guid permalink": "https://news.example/p/2",
                     "Script link": None}
    errors = {s.item.title: s.page_error for s in pipeline.processor.seen}
    assert errors["No link"] == "the item has no link"
    # The made-up link (the guid resolved against the feed URL) was never requested.
    assert [r.path for r in site.requests if r.path != "/links"] == ["/a/relative"]


# --- 28: markup and control characters -------------------------------------------------------------


def test_titles_are_plain_text_without_control_characters() -> None:
    title = ("&lt;script&gt;alert(1)&lt;/script&gt;Bad\x01\x02news\x1f &lt;img src=x "
             "onerror=alert(1)&gt;here\u202egnp.exe")
    body = doc(item(title, "s", "<description>&lt;b onclick='x()'&gt;bold&lt;/b&gt; "
                                "&lt;script&gt;steal()&lt;/script&gt; text\x07</description>")
               + b"<item><title><![CDATA[<!channel> <@U123> *md* a < b]]></title>"
                 b"<guid>c</guid></item>"
               + b"<item><title>ANSI \x1b[31mred\x1b[0m</title><guid>e</guid></item>")
    parsed = parse_feed(body, url=URL)
    for entry in parsed.items:
        for text in (entry.title, entry.summary):
            assert not any(ord(c) < 32 and c not in "\n\t" for c in text), repr(text)
            assert "\u202e" not in text
            assert "<script" not in text and "<img" not in text and "onclick" not in text
        assert "\n" not in entry.title
    assert parsed.items[0].title.startswith("alert(1)Badnews")
    assert parsed.items[0].summary.startswith("bold")
    # Slack-looking sequences stay as plain text: escaping per target is the delivery's job.
    assert parsed.items[1].title == "<!channel> <@U123> *md* a < b"
    assert parsed.items[2].title == "ANSI [31mred[0m"


def test_c1_controls_from_windows_1252_are_mapped_back() -> None:
    body = doc("<item><title>\u0093Quoted\u0094 \u0096 dash\u0081</title><guid>q</guid></item>"
               .encode())
    assert parse_feed(body, url=URL).items[0].title == "\u201cQuoted\u201d \u2013 dash"


def test_a_feed_without_the_breaker_alerts_normally(tmp_path: Path, site: Site) -> None:
    """Control for the breaker test: a normal feed's first polls are not held."""
    config = pipeline_config(tmp_path, [FeedConfig(url=served(site, "/ok", rss([
        {"title": MATCHING_TITLE, "guid": "x", "description": MATCHING_TITLE}])))])
    pipeline = build(config, real_matching=True)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.alerts == 2 and not outcome.held
