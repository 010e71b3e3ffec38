"""Feed autodiscovery: from a site's page to its feeds.

``<link rel="alternate" type="application/rss+xml|atom+xml|feed+json" href>``
in the page (relative to the page URL or its ``<base href>``). When the URL is
a feed already, that feed is the answer. When a page announces nothing, a few
well-known paths (``/feed``, ``/rss.xml``...) are tried and kept only if they
really parse as feeds. Everything is fetched with the hardened Fetcher (the
same egress policy as polling).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from urllib.parse import urljoin, urlsplit

from lxml import etree
from lxml import html as lxml_html

from monitor.ingest.fetch import Fetcher
from monitor.ingest.parse import FeedParseError, looks_like_feed, parse_feed
from monitor.models import FetchError, FetchResult

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",  # JSON Feed announced with the generic type
    "application/rdf+xml": "rdf",
    "text/xml": "xml",
    "application/xml": "xml",
}
GUESSES = ("/feed", "/rss", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml", "/feed.json")
MAX_PAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FoundFeed:
    url: str
    title: str | None = None
    kind: str = "rss"  # rss | atom | json | rdf | xml
    source: str = "link"  # "link" (announced), "self" (the URL is a feed), "guess"


def feed_links(page: bytes, page_url: str) -> list[FoundFeed]:
    """Feeds a page announces with ``<link rel="alternate" type=...>``, in page order."""
    try:
        root = lxml_html.document_fromstring(page[:MAX_PAGE_BYTES])
    except (etree.ParserError, ValueError):
        return []
    base = page_url
    for element in root.iter("base"):
        href = (element.get("href") or "").strip()
        if href:
            base = urljoin(page_url, href)
            break
    found: list[FoundFeed] = []
    seen: set[str] = set()
    for link in root.iter("link"):
        rels = {r.lower() for r in (link.get("rel") or "").split()}
        media = (link.get("type") or "").split(";")[0].strip().lower()
        href = (link.get("href") or "").strip()
        if "alternate" not in rels or media not in FEED_TYPES or not href:
            continue
        url = urljoin(base, href)
        if urlsplit(url).scheme.lower() not in ("http", "https") or url in seen:
            continue
        seen.add(url)
        found.append(FoundFeed(url=url, title=(link.get("title") or "").strip() or None,
                               kind=FEED_TYPES[media]))
    return found


def _as_feed(result: FetchResult, url: str) -> FoundFeed | None:
    """The response as a feed, if it parses as one."""
    if not looks_like_feed(result.content, result.content_type):
        return None
    try:
        parsed = parse_feed(result.content, url=url, content_type=result.content_type,
                            max_items=1)
    except FeedParseError:
        return None
    kind = ("json" if parsed.version.startswith("json") else
            "atom" if parsed.version.startswith("atom") else
            "rdf" if parsed.version == "rss10" else "rss")
    return FoundFeed(url=url, title=parsed.title or None, kind=kind, source="self")


async def discover(url: str, fetcher: Fetcher, *, allow_private: bool = False,
                   guess: bool = True) -> list[FoundFeed]:
    """The feeds behind ``url``: itself if it is a feed, else what its page announces,
    else (with ``guess``) well-known paths that turn out to be feeds.

    Raises FetchError when ``url`` itself cannot be fetched.
    """
    result = await fetcher.fetch(url, kind="feed", allow_private=allow_private,
                                 max_bytes=MAX_PAGE_BYTES)
    itself = _as_feed(result, result.url)
    if itself is not None:
        return [itself]
    announced = feed_links(result.content, result.url)
    if announced or not guess:
        return announced
    candidates = [urljoin(result.url, path) for path in GUESSES]

    async def probe(candidate: str) -> FoundFeed | None:
        try:
            answer = await fetcher.fetch(candidate, kind="feed", allow_private=allow_private,
                                         max_bytes=MAX_PAGE_BYTES)
        except FetchError:
            return None
        feed = _as_feed(answer, candidate)
        return replace(feed, source="guess") if feed else None

    probed = await asyncio.gather(*(probe(c) for c in candidates))
    return [f for f in probed if f is not None]
