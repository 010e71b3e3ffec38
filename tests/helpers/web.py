"""Helpers for the workspace tests (test_web_*): a database filled through the real
pipeline from loopback feeds, and ``newsmon web`` served on 127.0.0.1 in a thread."""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from monitor.config import Config, FeedConfig
from monitor.web import WebSettings, serve
from monitor.web.security import Credentials
from tests.helpers.feed import PIPELINE_CHANNELS, build, run
from tests.helpers.servers import Site, article_html, rss

HOSTILE_TITLE = ('<script>document.title="pwned";window.pwned=1</script> Ceasefire talks'
                 ' <img src=x onerror="window.pwned=2"> in Kyiv')
HOSTILE_BODY = ('Russia and Ukraine agree ceasefire in talks on a peace deal. '
                '<a href="javascript:window.pwned=3">click</a> <svg onload="window.pwned=4"></svg>')

ARTICLES = {
    "/a/ceasefire": ("Russia and Ukraine agree ceasefire in talks on peace deal", [
        "Negotiators from Russia and Ukraine agreed a ceasefire on Tuesday after talks in Istanbul.",
        "The peace deal would take effect at midnight, officials said, and the Kremlin confirmed it.",
        "Observers from the OSCE will monitor the front line during the truce.",
    ]),
    "/a/grain": ("Black Sea grain corridor reopens as ships leave Odesa", [
        "Ships carrying grain left Odesa on Monday as the corridor reopened.",
        "Insurers said the rates were falling.",
    ]),
    "/a/football": ("Local football club wins the cup", [
        "The club won the final two goals to nil in front of a home crowd.",
    ]),
}


@dataclass
class FilledDatabase:
    config: Config
    site: Site


def fill(tmp_path: Path, site: Site, database: str = "web.db") -> Config:
    """A database filled by the real pipeline (fetch, extract, analyse, match, record);
    ``database`` a SQLite file name or a PostgreSQL URL."""
    from tests.helpers.configs import ConfigFactory

    items = []
    for path, (title, paragraphs) in ARTICLES.items():
        site.routes[path] = (200, {"Content-Type": "text/html; charset=utf-8"},
                             article_html(title, paragraphs))
        items.append({"title": title, "link": site.url(path), "guid": path,
                      "description": paragraphs[0]})
    items.append({"title": HOSTILE_TITLE, "link": "javascript:window.pwned=5", "guid": "hostile",
                  "description": HOSTILE_BODY})
    # Escaped once more, the markup survives the parser as literal text: the page must escape it.
    items.append({"title": html.escape(HOSTILE_TITLE), "link": site.url("/a/missing"),
                  "guid": "hostile-text", "description": html.escape(HOSTILE_BODY)})
    site.routes["/feed"] = (200, {"Content-Type": "application/rss+xml"}, rss(items, "Loopback News"))
    feed = FeedConfig(url=site.url("/feed"), name="loopback-news")
    config = ConfigFactory(tmp_path).load(database=database, feeds=[feed], channels=PIPELINE_CHANNELS,
                                          fetch={"fetch_articles": True})
    pipeline = build(config, real_matching=True)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    pipeline.storage.close()
    assert outcome.ok and outcome.new_items == len(items), outcome
    return config


class WebServer:
    """``monitor.web.serve`` on 127.0.0.1, port 0, in a thread with its own loop."""

    def __init__(self, config: Config, credentials: Credentials | None = None,
                 host: str = "127.0.0.1") -> None:
        self.settings = WebSettings(host=host, port=0, credentials=credentials or Credentials())
        self.config = config
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()

        def ready(url: str) -> None:
            self.url = url.rstrip("/")
            self._ready.set()

        self._task = loop.create_task(serve(self.config, self.settings, ready))
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    def __enter__(self) -> WebServer:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.url, "the web server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)


@contextmanager
def served(config: Config, **kwargs: object) -> Iterator[WebServer]:
    with WebServer(config, **kwargs) as server:  # type: ignore[arg-type]
        yield server
