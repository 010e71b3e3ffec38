"""The parse stage: feed bytes → ``ParsedFeed`` of plain-text ``FeedItem``s.

feedparser reads RSS 0.9x/1.0/2.0 and Atom; JSON Feed is read here. Feeds are
always handed over as bytes: given a string, feedparser would open a local
file or fetch a URL by itself.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
from lxml import html as lxml_html

from monitor.models import FeedItem, ParsedFeed, StageError

MAX_TITLE = 1_000
MAX_SUMMARY = 20_000

# Tracking parameters removed to make canonical URLs (compared case-insensitively).
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "igshid",
    "yclid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "ref_src",
    "cmpid", "ocid", "ito", "taid", "ns_campaign", "ns_mchannel", "ns_source", "ns_linkname",
    "ns_fee", "at_medium", "at_campaign", "at_custom1", "at_custom2", "at_custom3",
    "at_custom4", "smid", "rss", "cid", "xtor", "s_cid",
})
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"[ \t\r\f\v]+")


class FeedParseError(StageError):
    kind = "not_a_feed"


def clean_text(value: str, limit: int) -> str:
    """Control characters out, runs of spaces folded, at most ``limit`` characters."""
    value = _CONTROL.sub("", value)
    value = _SPACE.sub(" ", value)
    value = "\n".join(line.strip() for line in value.splitlines()).strip()
    value = re.sub(r"\n{3,}", "\n\n", value)
    return value[:limit]


def html_to_text(fragment: str, limit: int = MAX_SUMMARY) -> str:
    """Feed HTML (already sanitised by feedparser) → plain text."""
    if not fragment:
        return ""
    if "<" not in fragment and "&" not in fragment:
        return clean_text(fragment, limit)
    try:
        root = lxml_html.fragment_fromstring(fragment[: limit * 4], create_parent="div")
    except (ValueError, TypeError, lxml_html.etree.ParserError):
        return clean_text(re.sub(r"<[^>]*>", " ", fragment), limit)
    for br in root.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for block in root.iter("p", "div", "li", "h1", "h2", "h3", "h4", "blockquote"):
        block.tail = "\n" + (block.tail or "")
    return clean_text(root.text_content(), limit)


def canonical_url(url: str | None) -> str | None:
    """Strip tracking parameters and fragments; lower-case scheme and host.

    Only http(s) URLs are canonical; anything else (javascript:, data:, a bare
    path) yields None and is never fetched.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(_TRACKING_PREFIXES)
    ]
    netloc = parts.netloc.lower()
    if netloc.endswith(":80") and parts.scheme.lower() == "http":
        netloc = netloc[:-3]
    if netloc.endswith(":443") and parts.scheme.lower() == "https":
        netloc = netloc[:-4]
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), netloc, path, urlencode(query), ""))


def _http_link(link: str | None, base: str) -> str | None:
    if not link:
        return None
    absolute = urljoin(base, link.strip())
    scheme = urlsplit(absolute).scheme.lower()
    return absolute if scheme in ("http", "https") else None


def content_hash(title: str, summary: str) -> str:
    normal = re.sub(r"\W+", " ", f"{title}\n{summary}".lower()).strip()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:32]


def _struct_to_dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, TypeError, OSError):
        return None


def _make_item(
    *, guid: str | None, link: str | None, title: str, summary: str,
    published: datetime | None, authors: tuple[str, ...], tags: tuple[str, ...],
) -> FeedItem:
    digest = content_hash(title, summary)
    canonical = canonical_url(link)
    return FeedItem(
        guid=(guid or canonical or f"hash:{digest}")[:2000],
        link=link, canonical_url=canonical, title=title, summary=summary,
        published=published, authors=authors, tags=tags, content_hash=digest,
    )


def _published_link(entry: Mapping[str, Any], base: str) -> str | None:
    """The item's link, only if the feed really published one.

    For an RSS item without <link>, feedparser makes ``link`` up from the guid
    resolved against the feed URL (``http://feed.example/6``): a URL that was
    never published must not be fetched. An absolute http(s) guid with
    isPermaLink (the RSS default) is a real permalink and is kept.
    """
    for candidate in entry.get("links") or ():
        if candidate.get("rel", "alternate") == "alternate" and candidate.get("href"):
            return _http_link(candidate["href"], base)
    guid = str(entry.get("id") or "")
    if entry.get("guidislink") and re.match(r"^https?://", guid, re.I):
        return _http_link(guid, base)
    return None


def _entry_to_item(entry: Mapping[str, Any], base: str) -> FeedItem:
    title = html_to_text(entry.get("title", "") or "", MAX_TITLE)
    summary_html = entry.get("summary", "") or ""
    contents = entry.get("content") or []
    if contents and len(contents[0].get("value", "")) > len(summary_html):
        summary_html = contents[0].get("value", "")
    summary = html_to_text(summary_html, MAX_SUMMARY)
    link = _published_link(entry, base)
    authors = tuple(
        clean_text(a.get("name", ""), 200) for a in entry.get("authors", []) if a.get("name")
    )
    tags = tuple(
        clean_text(t.get("term", ""), 100) for t in entry.get("tags", []) if t.get("term")
    )
    published = _struct_to_dt(entry.get("published_parsed") or entry.get("updated_parsed"))
    return _make_item(guid=entry.get("id"), link=link, title=title, summary=summary,
                      published=published, authors=authors, tags=tags)


def _looks_like_json_feed(content: bytes, content_type: str) -> bool:
    head = content[:512].lstrip()
    return content_type in ("application/feed+json", "application/json") or (
        head.startswith(b"{") and b"jsonfeed.org" in content[:4096]
    )


def parse_json_feed(content: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1), which feedparser does not read."""
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedParseError(f"{url}: not a feed (invalid JSON Feed: {exc})") from None
    if not isinstance(data, dict) or "jsonfeed.org/version/" not in str(data.get("version", "")):
        raise FeedParseError(f"{url}: not a feed (JSON without a jsonfeed.org version)")
    items = []
    for raw in data.get("items") or []:
        if not isinstance(raw, dict):
            continue
        text = raw.get("content_text") or html_to_text(raw.get("content_html") or "")
        summary = clean_text(str(raw.get("summary") or text or ""), MAX_SUMMARY)
        published = None
        for key in ("date_published", "date_modified"):
            if raw.get(key):
                try:
                    published = datetime.fromisoformat(str(raw[key]).replace("Z", "+00:00"))
                    published = published if published.tzinfo else published.replace(tzinfo=UTC)
                    published = published.astimezone(UTC)
                    break
                except ValueError:
                    continue
        authors = tuple(
            clean_text(str(a.get("name", "")), 200)
            for a in (raw.get("authors") or ([raw["author"]] if raw.get("author") else []))
            if isinstance(a, dict) and a.get("name")
        )
        items.append(_make_item(
            guid=str(raw["id"]) if raw.get("id") is not None else None,
            link=_http_link(raw.get("url"), url),
            title=clean_text(str(raw.get("title") or ""), MAX_TITLE), summary=summary,
            published=published, authors=authors,
            tags=tuple(clean_text(str(t), 100) for t in raw.get("tags") or [] if t),
        ))
    version = "json11" if "1.1" in str(data.get("version")) else "json1"
    return ParsedFeed(title=clean_text(str(data.get("title") or ""), MAX_TITLE), version=version,
                      items=tuple(items), link=_http_link(data.get("home_page_url"), url))


def parse_feed(
    content: bytes, *, url: str, content_type: str = "", max_items: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse feed bytes. Raises FeedParseError ("not a feed") for anything else.

    ``max_items`` keeps the newest items only (by date when every item has one,
    else the feed's own order, which is newest first by convention).
    """
    if not content.strip():
        raise FeedParseError(f"{url}: not a feed (empty body)")
    if _looks_like_json_feed(content, content_type):
        parsed = parse_json_feed(content, url)
    else:
        response_headers = {"content-location": url}
        if headers and headers.get("content-type"):
            response_headers["content-type"] = headers["content-type"]
        result = feedparser.parse(content, response_headers=response_headers,
                                  sanitize_html=True, resolve_relative_uris=True)
        version = result.get("version") or ""
        if not result.entries and (not version or result.get("bozo")):
            reason = result.get("bozo_exception")
            detail = f": {str(reason).splitlines()[0][:200]}" if reason else ""
            raise FeedParseError(f"{url}: not a feed (no RSS, Atom or JSON Feed found{detail})")
        feed = result.feed
        warnings = []
        if result.get("bozo"):
            warnings.append(str(result.get("bozo_exception", "malformed feed"))[:300])
        ttl = None
        try:
            ttl = int(feed.get("ttl")) if feed.get("ttl") else None
        except (TypeError, ValueError):
            ttl = None
        items = tuple(_entry_to_item(e, url) for e in result.entries)
        parsed = ParsedFeed(
            title=html_to_text(feed.get("title", "") or "", MAX_TITLE), version=version or "unknown",
            items=items, ttl_minutes=ttl, link=_http_link(feed.get("link"), url),
            warnings=tuple(warnings),
        )
    if max_items is not None and len(parsed.items) > max_items:
        items_list = list(parsed.items)
        if all(i.published for i in items_list):
            items_list.sort(key=lambda i: i.published or datetime.min, reverse=True)
        parsed = ParsedFeed(parsed.title, parsed.version, tuple(items_list[:max_items]),
                            parsed.ttl_minutes, parsed.link, parsed.warnings)
    return parsed
