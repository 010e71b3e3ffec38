"""The extract stage: an article page's bytes → its main text (trafilatura).

trafilatura is only ever handed bytes that newsmon fetched itself: its own
fetcher retries without certificate checks after a TLS error. The bytes are
capped before extraction (a 50 MB page costs trafilatura 36 s and 1.3 GB).
When the page cannot be had, or yields too little text, the item is judged on
its feed summary, and ``Article.text_source`` records which text was used.
``Article.language`` is the page's ``<html lang>``, else the feed's (entry or
channel), as a primary subtag (``en-GB`` → ``en``): it picks the analyser.
"""

from __future__ import annotations

import html as html_lib
import logging
import re

import trafilatura

from monitor.analysis.detect import SAMPLE_CHARS, resolve_language
from monitor.analysis.languages import primary_language
from monitor.models import Article, ArticleInput, ExtractedPage

log = logging.getLogger(__name__)

MAX_HTML_BYTES = 5 * 1024 * 1024
# trafilatura's cost grows with the number of elements (about 80 µs a tag), so
# bytes alone do not bound it: 5 MB of tiny paragraphs took 32 s. The 181 real
# benchmark pages have at most 3,229 tags; past this many the rest is cut.
MAX_TAGS = 20_000
# Below this, an extraction is taken as failed (a cookie wall, a paywall
# teaser, content lost to libxml2's depth limit) unless the summary is shorter.
MIN_BODY_CHARS = 200

# fast=True skips trafilatura's fallback extractors, and metadata extraction
# (dates, authors, site names) is skipped too: together about half the cost a
# page, with the same body F1 on the 181 benchmark pages (0.957). The feed
# already gives the title, date and authors; the language and title are read
# from the page head below, which costs microseconds.
EXTRACT_OPTIONS = {"fast": True, "include_comments": False, "include_tables": True}

_HEAD_BYTES = 65_536
_LANG = re.compile(rb"<html[^>]*?[\s:]lang\s*=\s*[\"']?([A-Za-z0-9_-]{1,35})", re.I)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def page_language(html: bytes) -> str | None:
    """The primary language of ``<html lang>`` (or ``xml:lang``), lower case."""
    m = _LANG.search(html[:_HEAD_BYTES])
    return primary_language(m.group(1).decode("ascii")) if m else None


def page_title(html: bytes) -> str | None:
    m = _TITLE.search(html[:_HEAD_BYTES])
    if not m:
        return None
    title = html_lib.unescape(m.group(1).decode("utf-8", "replace"))
    return " ".join(title.split())[:1000] or None


def bounded(html: bytes) -> bytes:
    """At most MAX_HTML_BYTES and MAX_TAGS of the page, from its start."""
    html = html[:MAX_HTML_BYTES]
    if html.count(b"<") <= MAX_TAGS:
        return html
    cut = -1
    for _ in range(MAX_TAGS):
        cut = html.find(b"<", cut + 1)
    return html[:cut]


def looks_like_text(text: str) -> bool:
    """False for decoded binary junk: mostly letters, digits, spaces and punctuation."""
    sample = text[:20_000]
    if not sample:
        return False
    # Counted with str methods over the whole sample (a loop per character cost ~4 ms
    # a page): text with no control character outside whitespace is the common case.
    if "".join(sample.split()).isprintable():
        bad = sample.count("\ufffd")
    else:
        bad = sum(1 for ch in sample if ch == "\ufffd" or (not ch.isprintable() and not ch.isspace()))
    letters = sum(map(str.isalpha, sample)) + sum(map(str.isspace, sample))  # never both
    return bad / len(sample) < 0.02 and letters / len(sample) > 0.6


def extract_page(html: bytes, url: str | None = None) -> ExtractedPage | None:
    """Main text and metadata of a page, or None when nothing usable is found."""
    if not html:
        return None
    try:
        doc = trafilatura.bare_extraction(
            bounded(html), url=url, with_metadata=False, as_dict=False, **EXTRACT_OPTIONS  # type: ignore[arg-type]  # EXTRACT_OPTIONS holds only bool flags
        )
    except Exception as exc:  # trafilatura/lxml raise many kinds on junk input
        log.info("extraction failed for %s: %s", url, type(exc).__name__)
        return None
    text = getattr(doc, "text", None) if doc is not None else None
    if not isinstance(text, str) or not text.strip():
        return None
    if not looks_like_text(text):
        log.info("extraction of %s gave binary junk, not text", url)
        return None
    return ExtractedPage(
        text=text.strip(), title=page_title(html), language=page_language(html),
    )


def build_article(source: ArticleInput) -> tuple[Article, str | None]:
    """The text an item is judged on, and why the page was not used (if so)."""
    item = source.item
    page_error = source.page_error
    page = extract_page(source.html, item.link) if source.html else None
    if source.html and page is None:
        page_error = "no article text found on the page"
    elif page is not None and len(page.text) < min(MIN_BODY_CHARS, len(item.summary) + 1):
        page_error = f"page text too short ({len(page.text)} characters)"
        page = None
    # The language of the text judged: the page's when its text is used, else the feed's;
    # an unused page's <html lang> comes last (a consent wall may be in the reader's language).
    language = (page.language if page else None) or primary_language(item.language) \
        or (page_language(source.html) if source.html else None)
    # Checked against the text, and detected when no one said (see detect.py): Russian and
    # Ukrainian outlets often leave the tag out or keep a template's "en".
    body = page.text if page else ""
    language = resolve_language(
        language, f"{item.title or ''}\n{(body or item.summary or '')[:SAMPLE_CHARS]}")
    article = Article(
        title=item.title or (page.title if page else None) or "", summary=item.summary,
        body=body, text_source="page" if page else "summary",
        url=item.link, feed_url=source.feed_url, feed_tags=source.feed_tags,
        language=language, published=item.published,
        author=item.authors[0] if item.authors else None,
    )
    return article, page_error
