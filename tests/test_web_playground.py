"""The rule playground with a URL: a real page on a loopback server, fetched through the
daemon's fetcher and egress guard, extracted like the daemon extracts, then explained;
and the errors (blocked address, HTTP error, not a page, no article text) shown clearly."""

from __future__ import annotations

import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from monitor.config import Config
from tests.helpers.servers import Site, article_html
from tests.helpers.web import WebServer, fill

PAGE_TITLE = "Kremlin and Kyiv agree a ceasefire after peace talks"
PARAGRAPHS = [
    "Negotiators for Russia and Ukraine agreed a ceasefire on Tuesday after two days of talks in Geneva.",
    "The truce along the front line takes effect at midnight, both delegations said in a joint statement.",
    "Observers will monitor the ceasefire, and talks on a wider peace deal resume next week.",
    "Shelling had continued in the east until the last hours before the agreement was announced.",
]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Site() as s:
        s.routes["/news/ceasefire"] = (200, {"Content-Type": "text/html; charset=utf-8"},
                                       article_html(PAGE_TITLE, PARAGRAPHS))
        s.routes["/news/moved"] = (301, {"Location": "/news/ceasefire"}, b"")
        s.routes["/image.png"] = (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        s.routes["/empty"] = (200, {"Content-Type": "text/html"},
                              b"<html><head><title>x</title></head><body></body></html>")
        yield s


@pytest.fixture(scope="module")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Config]]:
    config = fill(tmp_path_factory.mktemp("pg"), site)
    with WebServer(config) as srv:
        yield srv, config


def explain_url(srv: WebServer, url: str) -> str:
    page = urllib.request.urlopen(srv.url + "/playground").read().decode()
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    data = urllib.parse.urlencode({"csrf": token, "url": url, "action": "url"}).encode()
    return urllib.request.urlopen(urllib.request.Request(srv.url + "/playground", data=data)).read().decode()


def test_a_pasted_url_is_fetched_extracted_and_explained(server: tuple[WebServer, Config],
                                                          site: Site) -> None:
    srv, config = server
    before = sqlite3.connect(config.database_path()).execute("SELECT COUNT(*) FROM articles").fetchone()
    body = explain_url(srv, site.url("/news/moved"))  # a redirect is followed, as the daemon does
    assert 'id="pg-fetched"' in body and site.url("/news/ceasefire") in body
    assert "FIRES" in body
    fired = body.split('class="card match fired" data-topic="')
    assert any(part.startswith("ceasefire") for part in fired[1:])
    assert PAGE_TITLE in body and "front line takes effect at midnight" in body  # what was judged
    assert "Copyright Test News" not in body  # extracted with the daemon's options: no boilerplate
    requests = [r for r in site.requests if r.path == "/news/ceasefire"]
    assert requests and requests[-1].headers.get("user-agent") == config.fetch.user_agent
    after = sqlite3.connect(config.database_path()).execute("SELECT COUNT(*) FROM articles").fetchone()
    assert before == after  # nothing stored


@pytest.mark.parametrize(("path", "expected"), [
    ("/missing", "could not fetch the page (http"),
    ("/image.png", "could not fetch the page"),
    ("/empty", "no article text on the page"),
])
def test_fetch_and_extraction_errors_are_shown(server: tuple[WebServer, Config], site: Site,
                                               path: str, expected: str) -> None:
    body = explain_url(server[0], site.url(path))
    assert 'id="pg-error"' in body and expected in body, body[body.find("pg-error") - 50:][:400]
    assert "FIRES" not in body and "no match" not in body


@pytest.mark.parametrize(("url", "expected"), [
    ("http://10.255.255.1/news", "blocked"),  # private: outside the allow-list (127.0.0.0/8 in tests)
    ("http://169.254.169.254/latest/meta-data/", "blocked"),  # cloud metadata
    ("file:///etc/passwd", "blocked"),
    ("javascript:alert(1)", "blocked"),
])
def test_the_egress_guard_applies(server: tuple[WebServer, Config], url: str, expected: str) -> None:
    body = explain_url(server[0], url)
    error = body.split('id="pg-error" role="alert">', 1)[1].split("</p>", 1)[0]
    assert expected in error and "root:" not in body
