"""Feed formats: RSS 0.91/0.92/1.0/2.0, Atom, JSON Feed 1.0/1.1, and gzip bytes."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.ingest.parse import FeedParseError, parse_feed, trim_items
from tests.helpers.feed import build, pipeline_config, rows, run
from tests.helpers.servers import Site

URL = "http://127.0.0.1/feeds/main.xml"

RSS091 = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
 "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old</title><link>http://127.0.0.1/</link>
<description>d</description><language>en</language>
<item><title>Caf\xe9 one</title><link>http://127.0.0.1/1</link><description>First</description></item>
</channel></rss>"""
RSS092 = b"""<rss version="0.92"><channel><title>T</title><link>http://127.0.0.1/</link>
<description>d</description><item><description>No title here</description></item></channel></rss>"""
RDF = b"""<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://127.0.0.1/"><title>R</title><link>http://127.0.0.1/</link>
<description>d</description></channel>
<item rdf:about="http://127.0.0.1/r1"><title>RDF item</title><link>http://127.0.0.1/r1</link>
<dc:date>2024-05-01T10:00:00Z</dc:date></item></rdf:RDF>"""
ATOM = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"
 xml:base="http://127.0.0.1/blog/"><title type="html">A &amp;lt;b&amp;gt;feed</title><id>urn:x</id>
<updated>2024-05-01T10:00:00Z</updated>
<entry><id>urn:1</id><title>Atom entry</title><link rel="alternate" href="posts/1"/>
<link rel="enclosure" href="http://127.0.0.1/a.mp3"/><updated>2024-05-01T10:00:00+02:00</updated>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Para <b>one</b></p><p>two</p></div>
</content><author><name>Ann</name></author><category term="world"/></entry></feed>"""


def test_rss_091_092_and_rdf() -> None:
    old = parse_feed(RSS091, url=URL)
    assert old.version == "rss091n"
    assert [(i.title, i.link) for i in old.items] == [("Café one", "http://127.0.0.1/1")]
    untitled = parse_feed(RSS092, url=URL)
    assert untitled.items[0].title == "" and untitled.items[0].summary == "No title here"
    assert untitled.items[0].guid.startswith("hash:")  # no guid, no link: the content hash
    rdf = parse_feed(RDF, url=URL)
    assert rdf.version == "rss10"
    assert rdf.items[0].published == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_atom_with_xml_base_xhtml_content_authors_and_tags() -> None:
    feed = parse_feed(ATOM, url=URL)
    assert feed.version == "atom10"
    assert feed.title == "A <b>feed"  # type="html" with an escaped tag: the text shows it
    entry = feed.items[0]
    assert entry.link == "http://127.0.0.1/blog/posts/1"  # xml:base, not the enclosure
    assert entry.summary == "Para one\ntwo"
    assert entry.published == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert entry.authors == ("Ann",) and entry.tags == ("world",)


def json_feed(version: str = "1.1", **extra: object) -> bytes:
    return json.dumps({
        "version": f"https://jsonfeed.org/version/{version}", "title": "JSON news",
        "home_page_url": "http://127.0.0.1/", **extra,
        "items": [
            {"id": "1", "url": "http://127.0.0.1/j/1", "title": "Plain \u0007text",
             "content_html": "<p>Hello <b>world</b></p>", "date_published": "2024-05-01T10:00:00Z",
             "authors": [{"name": "Bo"}], "tags": ["a", "b"]},
            {"id": 2, "url": "/j/2", "content_text": "Only text", "summary": "A summary",
             "date_modified": "2024-05-02T12:00:00+02:00", "author": {"name": "Old style"}},
            {"id": "3", "url": "javascript:alert(1)", "title": "Bad link",
             "date_published": "not a date"},
            "not an object",
        ],
    }).encode()


def test_json_feed_items() -> None:
    feed = parse_feed(json_feed(), url="http://127.0.0.1/feed.json",
                      content_type="application/feed+json")
    assert feed.version == "json11" and feed.title == "JSON news"
    first, second, third = feed.items
    assert (first.guid, first.link, first.title, first.summary) == (
        "1", "http://127.0.0.1/j/1", "Plain text", "Hello world")
    assert first.published == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert first.authors == ("Bo",) and first.tags == ("a", "b")
    assert second.guid == "2" and second.link == "http://127.0.0.1/j/2"
    assert second.summary == "A summary" and second.authors == ("Old style",)
    assert second.published == datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert third.link is None and third.published is None
    assert parse_feed(json_feed("1"), url=URL).version == "json1"


def test_json_feed_is_sniffed_without_a_content_type_and_errors_are_clear() -> None:
    assert len(parse_feed(json_feed(), url=URL).items) == 3
    with pytest.raises(FeedParseError, match="invalid JSON Feed"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1", "items": [', url=URL,
                   content_type="application/feed+json")
    with pytest.raises(FeedParseError, match=r"without a jsonfeed\.org version"):
        parse_feed(b'{"hello": "world"}', url=URL, content_type="application/json")


def test_json_feed_through_the_pipeline(tmp_path: Path, site: Site) -> None:
    site.routes["/feed.json"] = (200, {"Content-Type": "application/feed+json"}, json_feed())
    config = pipeline_config(tmp_path, [site.url("/feed.json")])
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.ok and outcome.new_items == 3
    assert {r[0] for r in rows(config, "SELECT guid FROM items")} == {"1", "2", "3"}


def test_gzip_bytes_without_content_encoding_are_read_within_the_cap() -> None:
    assert len(parse_feed(gzip.compress(RDF), url=URL).items) == 1
    bomb = gzip.compress(b"<rss>" + b" " * 20_000_000)
    with pytest.raises(FeedParseError, match="too large") as err:
        parse_feed(bomb, url=URL, max_bytes=1_000_000)
    assert err.value.kind == "too_large"


def test_trim_items_keeps_a_well_formed_document() -> None:
    body = (b"<rss version='2.0'><channel><title>t</title>"
            + b"".join(b"<item><title>%d</title></item>" % i for i in range(10))
            + b"<!-- tail --></channel></rss>")
    trimmed = trim_items(body, 3)
    assert trimmed.count(b"<item>") == 3 and trimmed.endswith(b"<!-- tail --></channel></rss>")
    assert [i.title for i in parse_feed(trimmed, url=URL).items] == ["0", "1", "2"]
    assert trim_items(body, 50) is body


def test_not_a_feed_is_an_error() -> None:
    for body in (b"", b"   ", b"<html><body>Please log in</body></html>", bytes(range(256)) * 8):
        with pytest.raises(FeedParseError, match="not a feed"):
            parse_feed(body, url=URL)
