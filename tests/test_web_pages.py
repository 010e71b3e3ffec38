"""The workspace over HTTP (no browser): every page on a database filled through the
real pipeline, the security headers, escaping, CSRF, feedback, and the bind rule."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.web import BindRefused, check_bind
from monitor.web.render import highlighted_text, safe_url
from monitor.web.security import CONTENT_SECURITY_POLICY, Credentials
from tests.helpers.servers import Site
from tests.helpers.web import WebServer, fill

PAGES = ("/", "/search?q=ceasefire", "/feeds", "/channels", "/playground", "/stories", "/article/1")


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with Site() as site:
        yield fill(tmp_path_factory.mktemp("web"), site)


@pytest.fixture(scope="module")
def server(filled: Config) -> Iterator[WebServer]:
    with WebServer(filled) as srv:
        yield srv


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def post(url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(),
                                     headers=headers or {}, method="POST")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "") or exc.read().decode()


def article_id(config: Config, title_part: str) -> int:
    db = sqlite3.connect(config.database_path())
    try:
        return int(db.execute("SELECT id FROM articles WHERE title LIKE ?",
                              (f"%{title_part}%",)).fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_the_security_headers(server: WebServer, page: str) -> None:
    status, headers, body = get(server.url + page)
    assert status == 200, body[:500]
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in body  # only <script src="/static/app.js">


def test_overview_shows_topics_chart_and_no_channel_url(server: WebServer, filled: Config) -> None:
    _, _, body = get(server.url + "/")
    assert "<svg" in body and "polyline" in body
    assert "Ceasefire and truce" in body
    for channel in filled.channels:
        assert channel.url not in body and channel.url.split("://", 1)[1] not in body
    _, _, channels = get(server.url + "/channels")
    assert "desk" in channels and "127.0.0.1:9" not in channels


def test_the_article_page_highlights_terms_and_evidence(server: WebServer, filled: Config) -> None:
    _, _, body = get(server.url + f"/article/{article_id(filled, 'agree ceasefire')}")
    assert '<span class="evidence">' in body and "<mark>" in body
    assert "threshold" in body
    assert 'href="http://127.0.0.1:' in body  # the source link


class _Markup(HTMLParser):
    """Every element and attribute a browser would build from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def live_markup(body: str) -> list[str]:
    """Scripts, event attributes and javascript: links that the page would make live."""
    parser = _Markup()
    parser.feed(body)
    found = []
    for tag, attrs in parser.tags:
        if tag == "script" and attrs.get("src") != "/static/app.js":
            found.append(f"<{tag}>")
        if tag in ("img", "svg", "iframe", "object", "embed") and attrs.get("class") != "chart":
            found.append(f"<{tag}>")
        found += [f"{tag} {k}" for k in attrs if k.startswith("on")]
        found += [f"{tag} {k}={v}" for k, v in attrs.items()
                  if k in ("href", "src", "action") and v and v.strip().lower().startswith("javascript")]
    return found


def test_hostile_titles_and_bodies_are_text(server: WebServer, filled: Config) -> None:
    db = sqlite3.connect(filled.database_path())
    rows = db.execute("SELECT id, title FROM articles WHERE title LIKE '%pwned%'").fetchall()
    db.close()
    assert len(rows) == 2 and any("<script>" in title for _, title in rows), rows  # literal markup stored
    for aid, _ in rows:
        _, _, body = get(server.url + f"/article/{aid}")
        assert live_markup(body) == [], aid
    _, _, results = get(server.url + "/search?q=pwned")
    assert live_markup(results) == [] and "&lt;script&gt;" in results
    _, _, overview = get(server.url + "/")
    assert live_markup(overview) == []


def test_search_is_safe_with_any_syntax(server: WebServer) -> None:
    for query in ('"', "AND", "NEAR(", "title:", "-x", "*", "ceasefire OR", "a\x02b"):
        status, _, _ = get(server.url + "/search?" + urllib.parse.urlencode({"q": query}))
        assert status == 200, query
    _, _, body = get(server.url + "/search?q=ceasefire&matched=1")
    assert "<mark>" in body and "result" in body


def test_feedback_needs_the_form_token_and_same_origin(server: WebServer, filled: Config) -> None:
    aid = article_id(filled, "agree ceasefire")
    _, _, page = get(server.url + f"/article/{aid}")
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    form = {"article_id": str(aid), "verdict": "relevant", "topic": "ceasefire"}
    assert post(server.url + "/feedback", form)[0] == 403  # no token
    assert post(server.url + "/feedback", {**form, "csrf": "wrong"})[0] == 403
    evil = {"Origin": "http://evil.example"}
    assert post(server.url + "/feedback", {**form, "csrf": token}, evil)[0] == 403
    status, location = post(server.url + "/feedback", {**form, "csrf": token},
                            {"Origin": server.url})
    assert status == 303 and location.startswith(f"/article/{aid}")
    db = sqlite3.connect(filled.database_path())
    assert db.execute("SELECT article_id, topic, verdict FROM feedback").fetchall()[-1] == (
        aid, "ceasefire", "relevant")
    db.close()


def test_the_playground_explains_without_storing(server: WebServer, filled: Config) -> None:
    _, _, page = get(server.url + "/playground")
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    before = sqlite3.connect(filled.database_path()).execute("SELECT COUNT(*) FROM articles").fetchone()
    request = urllib.request.Request(server.url + "/playground", method="POST", data=urllib.parse.urlencode(
        {"csrf": token, "title": "Kremlin rejects ceasefire talks", "text": "<b>peace</b>"}).encode())
    body = urllib.request.urlopen(request).read().decode()
    assert "FIRES" in body and "&lt;b&gt;peace&lt;/b&gt;" in body
    after = sqlite3.connect(filled.database_path()).execute("SELECT COUNT(*) FROM articles").fetchone()
    assert before == after


def test_a_non_loopback_bind_needs_credentials(filled: Config) -> None:
    with pytest.raises(BindRefused, match="NEWSMON_WEB_TOKEN"):
        check_bind("0.0.0.0", Credentials())
    with pytest.raises(BindRefused, match="too short"):
        check_bind("0.0.0.0", Credentials(token="short"))
    check_bind("0.0.0.0", Credentials(token="x" * 32))
    check_bind("0.0.0.0", Credentials(user="analyst", password="secret"))
    check_bind("127.0.0.1", Credentials())
    check_bind("::1", Credentials())
    with pytest.raises(BindRefused):
        WebServer(filled, host="0.0.0.0").__enter__()


def test_credentials_are_enforced_when_set(filled: Config) -> None:
    token = "t" * 32
    with WebServer(filled, credentials=Credentials(token=token)) as srv:
        assert get(srv.url + "/")[0] == 401
        assert get(srv.url + "/", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(srv.url + "/", {"Authorization": f"Bearer {token}"})[0] == 200
        _, _, body = get(srv.url + "/feeds", {"Authorization": f"Bearer {token}"})
        assert token not in body


def test_the_cli_refuses_a_public_address_without_credentials(filled: Config, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from monitor.cli.app import cli

    for name in ("NEWSMON_WEB_TOKEN", "NEWSMON_WEB_USER", "NEWSMON_WEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["web", "--config", str(filled.source), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "refusing to listen on 0.0.0.0" in result.output


def test_links_and_highlights_escape() -> None:
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:x", "data:text/html,x",
                "//evil.example", "vbscript:x", ""):
        assert safe_url(bad) is None, bad
    assert safe_url("https://example.org/a?b=1") == "https://example.org/a?b=1"
    html = str(highlighted_text("<b>Peace</b> talks <i>now</i>", terms=["talks"],
                                sentences=["<b>Peace</b> talks"]))
    assert "<b>" not in html and "&lt;b&gt;" in html and "<mark>talks</mark>" in html


# --- stories -------------------------------------------------------------------------------

STORY_ID = "9001"


@pytest.fixture(scope="module")
def story(filled: Config) -> dict[str, int]:
    """One story of two stored articles (the grain one a near-duplicate), through StoryRepository;
    the ceasefire article's alerts are marked as the story's."""
    from datetime import timedelta

    from monitor.records import StoryArticleRecord, StoryRecord, utcnow
    from monitor.storage import open_storage
    from monitor.storage.stories import StoryRepository

    ids = {"ceasefire": article_id(filled, "agree ceasefire"), "grain": article_id(filled, "grain corridor")}
    db = sqlite3.connect(filled.database_path())
    keys = {name: str(db.execute("SELECT dedup_key FROM articles WHERE id = ?", (aid,)).fetchone()[0])
            for name, aid in ids.items()}
    db.close()
    now = utcnow()
    storage = open_storage(filled.database_path())
    try:
        repo = StoryRepository(storage.connection)
        record = StoryRecord(story_id=STORY_ID, label="Ceasefire <b>agreed</b> in Istanbul",
                             label_article_id=keys["ceasefire"], first_seen=now - timedelta(hours=2),
                             last_seen=now, member_ids=(keys["ceasefire"], keys["grain"]),
                             outlets=("loopback-news",), centroid={"ceasefire": 1.0}, centroid_norm=1.0)
        repo.save_story(record)
        for name, when, dup in (("ceasefire", now - timedelta(hours=2), None),
                                ("grain", now, keys["ceasefire"])):
            repo.add_article(StoryArticleRecord(
                article_id=keys[name], story_id=STORY_ID, event_time=when, headline=f"{name} headline",
                source="loopback-news", vector={"ceasefire": 1.0}, exact="x", sample=b"", words=10,
                wire_credit=False, near_dup_of=dup, similarity=0.93 if dup else 1.0), ["ceasefire"])
        storage.connection.db.execute("UPDATE alerts SET story_id = ? WHERE article_id = ?",
                                      (STORY_ID, ids["ceasefire"]))
        storage.connection.db.conn.commit()
    finally:
        storage.close()
    return ids


def test_the_stories_page_lists_a_story(server: WebServer, story: dict[str, int]) -> None:
    status, _, body = get(server.url + "/stories")
    assert status == 200, body[:500]
    assert f'href="/story/{STORY_ID}"' in body
    assert "Ceasefire &lt;b&gt;agreed&lt;/b&gt; in Istanbul" in body and live_markup(body) == []
    _, _, topical = get(server.url + "/stories?topic=ceasefire&since=7d")
    assert f'href="/story/{STORY_ID}"' in topical
    _, _, other = get(server.url + "/stories?topic=no-such-topic")
    assert f'href="/story/{STORY_ID}"' not in other and "No stories" in other
    status, _, bad = get(server.url + "/stories?since=soon")
    assert status == 200 and "since:" in bad


def test_the_story_page_shows_its_articles_and_alerts(server: WebServer, filled: Config,
                                                      story: dict[str, int]) -> None:
    status, headers, body = get(server.url + f"/story/{STORY_ID}")
    assert status == 200, body[:500]
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY and live_markup(body) == []
    assert "Ceasefire &lt;b&gt;agreed&lt;/b&gt; in Istanbul" in body
    assert "ceasefire headline" in body and "grain headline" in body
    for aid in story.values():
        assert f'href="/article/{aid}"' in body
    assert "near-duplicate of" in body
    db = sqlite3.connect(filled.database_path())
    channels = [r[0] for r in db.execute("SELECT channel FROM alerts WHERE story_id = ?", (STORY_ID,))]
    db.close()
    for name in channels:
        assert f"<td>{name}</td>" in body
    for channel in filled.channels:
        assert channel.url not in body


def test_an_unknown_story_is_not_found(server: WebServer, story: dict[str, int]) -> None:
    status, _, body = get(server.url + "/story/no-such-story")
    assert status == 404 and "story no-such-story" in body
