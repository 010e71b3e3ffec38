"""The seed article served as a user's feed would serve it (no tests here).

``serve_seed`` is a fixture's body (a test module names it:
``seed_site = pytest.fixture(name="seed_site")(serve_seed)``): a loopback site with
``/feed.xml``, one RSS item whose link (with a tracking parameter) leads to
``/article/seed``, the seed article as an HTML page. The seed rules match it on all
of ``TOPICS``.
"""

from __future__ import annotations

from collections.abc import Iterator

from tests.helpers.paths import SEED
from tests.helpers.servers import Site, article_html, rss

__all__ = ["TITLE", "TOPICS", "serve_seed"]

TITLE = "Kremlin says there are no grounds for negotiations yet"
TOPICS = {"negotiation", "ceasefire", "aid"}


def serve_seed() -> Iterator[Site]:
    paragraphs = SEED.read_text(encoding="utf-8").split("\n")
    site = Site()
    site.routes["/article/seed"] = (200, {"Content-Type": "text/html; charset=utf-8"},
                                    article_html(TITLE, paragraphs))
    site.start()
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss([{
        "title": TITLE, "link": site.url("/article/seed?utm_source=rss"), "guid": "seed-1",
        "description": "Russia says peace talks remain off the table.",
        "pubDate": "Wed, 25 Dec 2024 10:00:00 GMT"}]))
    yield site
    site.stop()
