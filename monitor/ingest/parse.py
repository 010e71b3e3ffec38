"""The parse stage: feed bytes → ``ParsedFeed`` of plain-text ``FeedItem``s.

feedparser reads RSS 0.9x/1.0/2.0 and Atom; JSON Feed is read here. Feeds are
always handed over as bytes: given a string, feedparser would open a local
file or fetch a URL by itself.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import pyexpat
import re
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
from lxml import html as lxml_html

from monitor.errors import FeedParseError as FeedParseError
from monitor.models import FeedItem, ParsedFeed

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

# C0 controls (but tab and newlines), DEL, and the bidi embedding/override/isolate
# controls, which can make a title display as something else (U+202E).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
# C1 controls: in real feeds these are windows-1252 bytes decoded as ISO-8859-1
# (a feed declaring Latin-1 but written by a Windows tool). Mapped back, or dropped.
_C1 = re.compile(r"[\x80-\x9f]")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Last resort when lxml cannot build a tree: drop anything tag-shaped.
_TAG = re.compile(r"<[^>]*>")

# libexpat 2.4.0 added the amplification limits that stop a one-line billion
# laughs (hostile-inputs case 19); feedparser's own DOCTYPE stripping misses it.
MIN_EXPAT = (2, 4, 0)
# Any entity declaration in the prolog is refused before parsing (cases 19-21):
# real feeds do not need them, and they are how entity bombs and XXE start.
_PROLOG_ENTITY = re.compile(rb"<!ENTITY", re.I)
# What the prolog holds before the root element: comments and processing
# instructions are skipped whole, so a ``<x>`` inside a comment is not taken for
# the root (and a long comment cannot push a declaration out of view).
_PROLOG_TOKEN = re.compile(rb"<!--.*?(?:-->|\Z)|<\?.*?(?:\?>|\Z)|<[A-Za-z_]", re.S)
# Item start and end tags, to trim a huge feed before feedparser sees it (case 22),
# with any namespace prefix (``<a:entry>``) and space before ``>`` (``</item >``).
_ITEM_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(item|entry)[\s>/]")
_ITEM_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>")
# Numeric character references; one naming a surrogate, U+0000 or a code point past
# U+10FFFF fails feedparser for the whole feed (UnicodeEncodeError, chr() range).
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON Feed nesting kept; deeper values (which only a hostile feed has) become null.
MAX_JSON_DEPTH = 64
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.S)
GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024


def expat_version() -> tuple[int, int, int]:
    major, minor, micro = pyexpat.version_info
    return (major, minor, micro)


def check_expat() -> None:
    """Refuse to run on a libexpat without entity-amplification limits (< 2.4.0)."""
    if expat_version() < MIN_EXPAT:
        raise RuntimeError(
            f"libexpat {pyexpat.EXPAT_VERSION} is too old: 2.4.0 or newer is needed to"
            " parse untrusted feeds safely (entity expansion limits); upgrade Python/expat"
        )


def _c1_to_cp1252(match: re.Match[str]) -> str:
    try:
        return match.group().encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:
        return ""  # 0x81, 0x8d, 0x8f, 0x90, 0x9d: undefined in windows-1252


def no_surrogates(value: str) -> str:
    """Lone surrogates (JSON ``\\ud800``) replaced by U+FFFD: they cannot be stored as UTF-8."""
    return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value


def _safe_char_ref(match: re.Match[bytes]) -> bytes:
    hex_digits, digits = match.group(1), match.group(2)
    text = hex_digits if hex_digits is not None else digits
    if len(text) > 8:
        return b"&#xFFFD;"
    code = int(text, 16 if hex_digits is not None else 10)
    if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return b"&#xFFFD;"
    return match.group()


def safe_char_refs(content: bytes) -> bytes:
    """Character references that cannot be a character replaced by U+FFFD, not fatal."""
    return _CHAR_REF.sub(_safe_char_ref, content) if b"&#" in content else content


def clean_text(value: str, limit: int) -> str:
    """Control characters out, runs of spaces folded, at most ``limit`` characters."""
    value = _CONTROL.sub("", value)
    value = no_surrogates(value)
    value = _C1.sub(_c1_to_cp1252, value)
    value = _SPACE.sub(" ", value)
    value = "\n".join(line.strip() for line in value.splitlines()).strip()
    value = _BLANK_LINES.sub("\n\n", value)
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
        return clean_text(_TAG.sub(" ", fragment), limit)
    for br in root.iter("br"):
        br.tail = "\n" + (br.tail or "")
    for block in root.iter("p", "div", "li", "h1", "h2", "h3", "h4", "blockquote"):
        block.tail = "\n" + (block.tail or "")
    text = clean_text(root.text_content(), limit)
    if not text:
        # libxml2 gives up on absurd nesting (50,000 <div>s) and returns nothing:
        # fall back to dropping the tags, so the words are not lost.
        text = clean_text(_TAG.sub(" ", fragment[: limit * 4]), limit)
    return text


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
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(_TRACKING_PREFIXES)
    ]
    netloc = parts.netloc.lower()
    default_port = ":80" if scheme == "http" else ":443"
    if netloc.endswith(default_port):
        netloc = netloc[: -len(default_port)]
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


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
    language: str | None = None,
) -> FeedItem:
    title, summary = no_surrogates(title), no_surrogates(summary)
    guid = no_surrogates(guid) if guid else guid
    link = no_surrogates(link) if link else link
    digest = content_hash(title, summary)
    canonical = canonical_url(link)
    return FeedItem(
        guid=(guid or canonical or f"hash:{digest}")[:2000],
        link=link, canonical_url=canonical, title=title, summary=summary,
        published=published, authors=authors, tags=tags, content_hash=digest,
        language=(clean_text(language, 35) or None) if language else None,
    )


# feedparser resolves relative URIs against the base it is given. It is given a
# stand-in host with the feed's own scheme and path, so a URI that was relative
# in the document can be told from an absolute one afterwards (and is then
# rebased onto the real feed URL).
_BASE_HOST = "newsmon-base.invalid"


def _stand_in_base(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme or "http", _BASE_HOST, parts.path or "/", parts.query, ""))


def _was_relative(value: str) -> bool:
    return urlsplit(value).hostname == _BASE_HOST if value else False


def _rebase(value: str | None, url: str) -> str | None:
    """A URI resolved against the stand-in base, moved onto the real feed URL."""
    if not value or not _was_relative(value):
        return value
    real, parts = urlsplit(url), urlsplit(value)
    return urlunsplit((real.scheme, real.netloc, parts.path, parts.query, parts.fragment))


def _published_link(entry: Mapping[str, Any], base: str) -> str | None:
    """The item's link, only if the feed really published one.

    For an RSS item without <link>, feedparser makes ``link`` up from the guid
    resolved against the feed URL (``http://feed.example/6``): a URL that was
    never published must not be fetched. A guid that was an absolute http(s)
    URL with isPermaLink (the RSS default) is a real permalink and is kept;
    a relative one (``6``) is an id, not a link.
    """
    guid = str(entry.get("id") or "")
    for candidate in entry.get("links") or ():
        href = candidate.get("href")
        if candidate.get("rel", "alternate") != "alternate" or not href:
            continue
        if entry.get("guidislink") and href == guid and _was_relative(guid):
            return None  # made up from a relative guid
        return _http_link(_rebase(href, base), base)
    if entry.get("guidislink") and re.match(r"^https?://", guid, re.I) and not _was_relative(guid):
        return _http_link(guid, base)
    return None


def one_line(text: str) -> str:
    """A title is one line: newlines inside it become spaces."""
    return " ".join(text.split())


def _entry_language(entry: Mapping[str, Any], feed_language: str | None) -> str | None:
    """The entry's own language (``dc:language``, ``xml:lang``), else the feed's."""
    for detail in (entry, entry.get("title_detail"), entry.get("summary_detail"),
                   *(entry.get("content") or ())[:1]):
        language = detail.get("language") if isinstance(detail, Mapping) else None
        if isinstance(language, str) and language.strip():
            return language
    return feed_language


def _entry_to_item(entry: Mapping[str, Any], base: str, feed_language: str | None = None) -> FeedItem:
    title = one_line(html_to_text(entry.get("title", "") or "", MAX_TITLE))
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
    return _make_item(guid=_rebase(entry.get("id"), base), link=link, title=title,
                      summary=summary,
                      published=published, authors=authors, tags=tags,
                      language=_entry_language(entry, feed_language))


def _looks_like_json_feed(content: bytes, content_type: str) -> bool:
    head = content[:512].lstrip()
    return content_type in ("application/feed+json", "application/json") or (
        head.startswith(b"{") and b"jsonfeed.org" in content[:4096]
    )


_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)[\s>]", re.I)


def looks_like_feed(content: bytes, content_type: str = "") -> bool:
    """A cheap sniff (no parse): JSON Feed, or XML whose root is rss/feed/RDF.

    For discovery, to tell a feed from a web page before paying for a parse.
    """
    if _looks_like_json_feed(content, content_type):
        return True
    head = content[:4096]
    if head.startswith(GZIP_MAGIC):
        return True
    if b"\x00" in head[:64]:
        head = head.replace(b"\x00", b"")
    return bool(_FEED_ROOT.search(head))


def _json_str(value: Any) -> str | None:
    """A JSON Feed field that must be a string; any other JSON type counts as absent."""
    return value if isinstance(value, str) else None


def _json_list(value: Any) -> list[Any]:
    """A JSON Feed field that must be an array; any other JSON type counts as empty."""
    return value if isinstance(value, list) else []


def parse_json_feed(content: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1), which feedparser does not read."""
    warnings: list[str] = []
    try:
        text = content.decode("utf-8-sig")
        try:
            data = json.loads(text)
        except RecursionError:
            text = cap_json_depth(text, MAX_JSON_DEPTH)
            data = json.loads(text)
            warnings.append(f"JSON nested deeper than {MAX_JSON_DEPTH} levels: the deeper values"
                            " were dropped")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FeedParseError(f"{url}: not a feed (invalid JSON Feed: {exc})"[:500]) from None
    if not isinstance(data, dict) or "jsonfeed.org/version/" not in str(data.get("version", "")):
        raise FeedParseError(f"{url}: not a feed (JSON without a jsonfeed.org version)")
    items: list[FeedItem] = []
    skipped: list[tuple[str, str]] = []
    for raw in _json_list(data.get("items")):
        if not isinstance(raw, dict):
            continue
        try:
            items.append(_json_item(raw, data, url))
        except Exception as exc:  # one bad item: skipped and reported, the feed goes on
            skipped.append((_json_str(raw.get("id")) or str(raw.get("id") or "")[:200],
                            f"{type(exc).__name__}: {exc}"[:300]))
    version = "json11" if "1.1" in str(data.get("version")) else "json1"
    return ParsedFeed(title=clean_text(str(data.get("title") or ""), MAX_TITLE), version=version,
                      items=tuple(items), link=_http_link(_json_str(data.get("home_page_url")), url),
                      warnings=tuple(warnings), skipped=tuple(skipped))


def cap_json_depth(text: str, max_depth: int) -> str:
    """``text`` with every array or object nested deeper than ``max_depth`` replaced by
    ``null`` (linear, no recursion), so ``json.loads`` cannot hit the recursion limit."""
    out: list[str] = []
    depth, kept_to, cut_from = 0, 0, -1
    for token in _JSON_TOKEN.finditer(text):
        mark = token.group()
        if mark[0] == '"':
            continue
        if mark in "[{":
            depth += 1
            if depth == max_depth + 1:
                cut_from = token.start()
        else:
            if depth == max_depth + 1 and cut_from >= 0:
                out.append(text[kept_to:cut_from])
                out.append("null")
                kept_to, cut_from = token.end(), -1
            depth -= 1
    out.append(text[kept_to:])
    return "".join(out)


def _json_item(raw: Mapping[str, Any], data: Mapping[str, Any], url: str) -> FeedItem:
    """One JSON Feed item (raises on an item that cannot be read)."""
    summary = clean_text(str(
        raw.get("summary") or raw.get("content_text")
        or html_to_text(_json_str(raw.get("content_html")) or "")
    ), MAX_SUMMARY)
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
        for a in (_json_list(raw.get("authors")) or [raw.get("author")])
        if isinstance(a, dict) and a.get("name")
    )
    return _make_item(
        guid=str(raw["id"]) if raw.get("id") is not None else None,
        link=_http_link(_json_str(raw.get("url")), url),
        title=one_line(clean_text(str(raw.get("title") or ""), MAX_TITLE)), summary=summary,
        published=published, authors=authors,
        tags=tuple(clean_text(str(t), 100) for t in _json_list(raw.get("tags")) if t),
        language=_json_str(raw.get("language")) or _json_str(data.get("language")),
    )


def _guard_prolog(content: bytes, url: str) -> None:
    """Refuse entity declarations before the root element (bombs, XXE).

    UTF-16 text is checked with its zero bytes removed, so the guard cannot be
    dodged by the encoding. The whole prolog is read, however long (a 70 KB
    comment first does not hide a declaration after it); comments and
    processing instructions are skipped whole, so the scan stops at the real root.
    """
    head = content
    if b"\x00" in head[:512]:
        head = head.replace(b"\x00", b"")
    root_at = len(head)
    for token in _PROLOG_TOKEN.finditer(head):
        if token.group()[1:2] not in (b"!", b"?"):
            root_at = token.start()
            break
    if _PROLOG_ENTITY.search(head, 0, root_at):
        raise FeedParseError(
            f"{url}: not a feed (refused: the document declares XML entities, which feeds"
            " do not need and entity-expansion and XXE attacks use)"
        )


_XML_DECL_ENCODING = re.compile(rb"^(<\?xml[^>]*?encoding\s*=\s*[\"'])[^\"']*([\"'])")


def _utf16_without_bom(content: bytes) -> bytes:
    """UTF-16 with no BOM (XML 1.0 appendix F: ``00 3C 00 3F`` or ``3C 00 3F 00``),
    which feedparser cannot detect without a declaration: re-encoded as UTF-8."""
    if content.startswith(b"\x00<\x00"):
        codec = "utf-16-be"
    elif content.startswith(b"<\x00") and content[2:4] in (b"?\x00", b"r\x00", b"f\x00"):
        codec = "utf-16-le"
    else:
        return content
    text = content.decode(codec, errors="replace").encode("utf-8")
    return _XML_DECL_ENCODING.sub(rb"\1utf-8\2", text, count=1)


def _maybe_gunzip(content: bytes, url: str, max_bytes: int) -> bytes:
    """Gzip bytes served without a Content-Encoding (a ``.xml.gz`` file): decoded,
    within the same byte cap as the fetch."""
    if not content.startswith(GZIP_MAGIC):
        return content
    decoder = zlib.decompressobj(31)
    try:
        out = decoder.decompress(content, max_bytes + 1)
    except zlib.error as exc:
        raise FeedParseError(f"{url}: not a feed (corrupt gzip data: {exc})") from None
    if len(out) > max_bytes:
        raise FeedParseError(f"{url}: feed too large (over {max_bytes} bytes once"
                             " decompressed)", kind="too_large")
    return out


def trim_items(content: bytes, keep: int) -> bytes:
    """Drop the items after the first ``keep`` from the raw XML, before parsing.

    feedparser costs ~0.2 ms an item: a 100,000-item feed would hold a worker
    for 10-40 s only to be cut to the newest N afterwards. Items are siblings,
    so the span from the (keep+1)-th item start to the end of the last item is
    removed, leaving a well-formed document. Feeds list newest first by
    convention; the newest-N sort by date then runs on what is left.
    """
    starts = _ITEM_START.finditer(content)
    cut = -1
    for count, match in enumerate(starts):
        if count == keep:
            cut = match.start()
            break
    if cut < 0:
        return content
    last_end = None
    for last_end in _ITEM_END.finditer(content, cut):  # noqa: B007 - the last one is wanted
        pass
    if last_end is None:
        return content  # not the simple sibling layout expected: leave it whole
    return content[:cut] + content[last_end.end():]


def _newest(items: list[FeedItem], max_items: int, now: datetime) -> list[FeedItem]:
    """The newest ``max_items``: by date when every item has one, else feed order.

    A date in the future sorts as ``now``: it cannot keep an item on top forever.
    """
    if all(i.published for i in items):
        items = sorted(items, key=lambda i: min(i.published or now, now), reverse=True)
    return items[:max_items]


def parse_feed(
    content: bytes, *, url: str, content_type: str = "", max_items: int | None = None,
    headers: Mapping[str, str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
    now: datetime | None = None,
) -> ParsedFeed:
    """Parse feed bytes. Raises FeedParseError ("not a feed") for anything else.

    ``max_items`` keeps the newest items only (by date when every item has one,
    else the feed's own order, which is newest first by convention). Before
    parsing, gzip bytes are decoded (within ``max_bytes``), entity declarations
    are refused and a huge feed is trimmed to a few times ``max_items``.
    """
    if not content.strip():
        raise FeedParseError(f"{url}: not a feed (empty body)")
    content = _maybe_gunzip(content, url, max_bytes)
    if _looks_like_json_feed(content, content_type):
        parsed = parse_json_feed(content, url)
    else:
        content = _utf16_without_bom(content)
        _guard_prolog(content, url)
        content = safe_char_refs(content)
        if max_items is not None:
            content = trim_items(content, max(4 * max_items, 500))
        response_headers = {"content-location": _stand_in_base(url)}
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
        try:
            ttl = int(feed.get("ttl")) if feed.get("ttl") else None
        except (TypeError, ValueError):
            ttl = None
        feed_language = feed.get("language") if isinstance(feed.get("language"), str) else None
        entries: list[FeedItem] = []
        skipped: list[tuple[str, str]] = []
        for entry in result.entries:
            try:
                entries.append(_entry_to_item(entry, url, feed_language))
            except Exception as exc:  # one bad item: skipped and reported, the feed goes on
                skipped.append((no_surrogates(str(entry.get("id") or entry.get("link") or ""))[:200],
                                f"{type(exc).__name__}: {exc}"[:300]))
        items = tuple(entries)
        parsed = ParsedFeed(
            title=one_line(html_to_text(feed.get("title", "") or "", MAX_TITLE)),
            version=version or "unknown", items=items, ttl_minutes=ttl,
            link=_http_link(_rebase(feed.get("link"), url), url), warnings=tuple(warnings),
            skipped=tuple(skipped),
        )
    if max_items is not None and len(parsed.items) > max_items:
        newest = _newest(list(parsed.items), max_items, now or datetime.now(UTC))
        parsed = dataclasses.replace(parsed, items=tuple(newest))
    return parsed
