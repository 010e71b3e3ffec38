"""The workspace's Atom feeds, read back with feedparser: valid Atom 1.0, one entry per
alert event, stable tag: ids, hostile titles as text, and the feed key."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import feedparser
import pytest

from monitor.config import Config
from monitor.web.security import Credentials
from tests.helpers.servers import Site
from tests.helpers.web import WebServer, fill

STORY_ID = "s-77"
# A story label a hostile feed could produce: markup, entities, CDATA end, XML-illegal controls.
HOSTILE_LABEL = 'Ceasefire <script>alert(1)</script> & "talks" ]]> \x01\x0b\x1b agreed'
CLEAN_LABEL = 'Ceasefire <script>alert(1)</script> & "talks" ]]>  agreed'


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with Site() as site:
        config = fill(tmp_path_factory.mktemp("atom"), site)
        _make_story(config)
        yield config


def _make_story(config: Config) -> None:
    """The ceasefire article's alerts become a story's (with a hostile label)."""
    from monitor.records import StoryRecord, utcnow
    from monitor.storage import open_storage
    from monitor.storage.stories import StoryRepository

    storage = open_storage(config.database_path())
    try:
        db = storage.connection.db
        aid, key = db.execute("SELECT id, dedup_key FROM articles WHERE title LIKE '%agree ceasefire%'"
                              ).fetchone()
        now = utcnow()
        StoryRepository(storage.connection).save_story(StoryRecord(
            story_id=STORY_ID, label=HOSTILE_LABEL, label_article_id=key,
            first_seen=now - timedelta(hours=1), last_seen=now, member_ids=(key,),
            outlets=("loopback-news",), centroid={"ceasefire": 1.0}, centroid_norm=1.0))
        db.execute("UPDATE alerts SET story_id = ? WHERE article_id = ?", (STORY_ID, aid))
        db.conn.commit()
    finally:
        storage.close()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def alert_events(config: Config) -> set[int]:
    db = sqlite3.connect(config.database_path())
    try:
        return {int(r[0]) for r in db.execute("SELECT DISTINCT article_id FROM alerts WHERE kind = 'match'")}
    finally:
        db.close()


def test_the_all_feed_is_valid_atom_with_one_entry_per_alert_event(filled: Config) -> None:
    with WebServer(filled) as srv:
        status, body, kind = fetch(srv.url + "/feeds/all.atom")
        first_ids = [e.id for e in feedparser.parse(body).entries]
    with WebServer(filled) as srv:  # a restart (another port): the same ids
        again = feedparser.parse(fetch(srv.url + "/feeds/all.atom")[1])
    assert status == 200 and kind.startswith("application/atom+xml")
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    # Two topics and one channel per article: still one entry per (story or article) event.
    assert len(parsed.entries) == len(alert_events(filled)) == 3
    assert [e.id for e in again.entries] == first_ids
    assert all(i.startswith("tag:newsmon,2026:") for i in first_ids) and len(set(first_ids)) == 3
    story = next(e for e in parsed.entries if f"/story/{STORY_ID}/" in e.id)
    assert story.title == CLEAN_LABEL  # the markup is text; the control characters are gone
    assert {t.term for t in story.tags} == {"ceasefire", "negotiation"}
    assert story.link.startswith("http://127.0.0.1:")  # the source
    assert any(link.rel == "related" and link.href.endswith(f"/story/{STORY_ID}") for link in story.links)
    assert "score" in story.summary and "threshold" in story.summary
    assert story.updated_parsed is not None


def test_hostile_articles_stay_text_and_javascript_links_are_not_links(filled: Config) -> None:
    with WebServer(filled) as srv:
        body = fetch(srv.url + "/feeds/all.atom")[1]
    assert b"<script>" not in body and b"&lt;script&gt;" in body
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0
    hostile = [e for e in parsed.entries if "pwned" in e.title]
    assert len(hostile) == 2
    for entry in hostile:
        assert all(not link.href.lower().startswith("javascript") for link in entry.links)
        assert "/article/" in entry.link or entry.link.startswith("http://127.0.0.1")


def test_a_topic_feed_holds_that_topic_only(filled: Config) -> None:
    with WebServer(filled) as srv:
        status, body, _ = fetch(srv.url + "/feeds/topic/ceasefire.atom")
        missing = fetch(srv.url + "/feeds/topic/no-such-topic.atom")[0]
    parsed = feedparser.parse(body)
    assert status == 200 and parsed.bozo == 0 and parsed.entries
    assert all("ceasefire" in {t.term for t in e.tags} for e in parsed.entries)
    assert parsed.feed.title.startswith("newsmon: Ceasefire and truce")
    assert missing == 404


def test_the_feeds_are_behind_the_same_auth_and_a_feed_key_opens_only_them(filled: Config) -> None:
    credentials = Credentials(token="f" * 32)
    key = credentials.feed_key()
    assert key and key != credentials.token and len(key) == 32
    with WebServer(filled, credentials=credentials) as srv:
        assert fetch(srv.url + "/feeds/all.atom")[0] == 401
        assert fetch(srv.url + "/feeds/all.atom?key=wrong")[0] == 401
        status, body, _ = fetch(srv.url + f"/feeds/all.atom?key={key}")
        assert status == 200 and feedparser.parse(body).bozo == 0
        assert credentials.token not in body.decode()  # the key may be in the self link; the token never
        assert fetch(srv.url + f"/feeds/topic/ceasefire.atom?key={key}")[0] == 200
        assert fetch(srv.url + f"/?key={key}")[0] == 401  # the key opens no page
        bearer = {"Authorization": f"Bearer {credentials.token}"}
        assert fetch(srv.url + "/feeds/all.atom", bearer)[0] == 200
        page = fetch(srv.url + "/", bearer)[1].decode()
    assert f'<link rel="alternate" type="application/atom+xml" title="newsmon: all alerts"' \
           f' href="/feeds/all.atom?key={key}">' in page
    assert f'href="/feeds/topic/ceasefire.atom?key={key}"' in page


def test_pages_link_the_feed_without_a_key_when_unguarded(filled: Config) -> None:
    with WebServer(filled) as srv:
        page = fetch(srv.url + "/search")[1].decode()
    assert 'type="application/atom+xml" title="newsmon: all alerts" href="/feeds/all.atom">' in page
