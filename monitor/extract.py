"""The extract stage: an article page's bytes → its main text (trafilatura).

trafilatura is only ever handed bytes that newsmon fetched itself: its own
fetcher retries without certificate checks after a TLS error. The bytes are
capped before extraction (a 50 MB page costs trafilatura 36 s and 1.3 GB).
When the page cannot be had, or yields too little text, the item is judged on
its feed summary, and ``Article.text_source`` records which text was used.
"""

from __future__ import annotations

import logging

import trafilatura

from monitor.models import Article, ArticleInput, ExtractedPage

log = logging.getLogger(__name__)

MAX_HTML_BYTES = 5 * 1024 * 1024
# Below this, an extraction is taken as failed (a cookie wall, a paywall
# teaser, content lost to libxml2's depth limit) unless the summary is shorter.
MIN_BODY_CHARS = 200

# fast=True skips trafilatura's fallback extractors: 16 ms instead of 25 ms a
# page here, with the same body F1 on the benchmark pages (perf-notes.md).
EXTRACT_OPTIONS = {"fast": True, "include_comments": False, "include_tables": True}


def extract_page(html: bytes, url: str | None = None) -> ExtractedPage | None:
    """Main text and metadata of a page, or None when nothing usable is found."""
    if not html:
        return None
    try:
        doc = trafilatura.bare_extraction(
            html[:MAX_HTML_BYTES], url=url, with_metadata=True, **EXTRACT_OPTIONS
        )
    except Exception as exc:  # trafilatura/lxml raise many kinds on junk input
        log.info("extraction failed for %s: %s", url, type(exc).__name__)
        return None
    if doc is None or not (doc.text or "").strip():
        return None
    return ExtractedPage(
        text=doc.text.strip(), title=doc.title or None, author=doc.author or None,
        date=doc.date or None, language=doc.language or None, sitename=doc.sitename or None,
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
    if page is not None:
        article = Article(
            title=item.title or page.title or "", summary=item.summary, body=page.text,
            text_source="page", url=item.link, feed_url=source.feed_url,
            feed_tags=source.feed_tags, language=page.language, published=item.published,
            author=page.author or (item.authors[0] if item.authors else None),
        )
    else:
        article = Article(
            title=item.title, summary=item.summary, body="", text_source="summary",
            url=item.link, feed_url=source.feed_url, feed_tags=source.feed_tags,
            published=item.published, author=item.authors[0] if item.authors else None,
        )
    return article, page_error
