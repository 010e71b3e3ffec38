"""The rule playground's "paste a URL": the page fetched through the daemon's own
hardened fetcher (the same egress policy: public addresses only, plus the
``fetch.allow_networks`` allow-list; the same byte cap, timeout and user agent) and
extracted with the daemon's ``build_article``, so what fires here is what would fire
for that page in a feed.

Errors are returned as text for the page (never raised): a blocked address, a
timeout, a non-page content type, a page without article text.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from monitor.config import Config
from monitor.errors import FetchError
from monitor.models import Article, ArticleInput, FeedItem

log = logging.getLogger(__name__)

MAX_URL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class FetchedArticle:
    """The article the daemon would judge for a URL, or why there is none."""

    article: Article | None
    final_url: str | None = None
    error: str | None = None


class PageFetcher:
    """One fetcher for the web process, made on first use inside the running loop."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._fetcher: Any = None

    def _get(self) -> Any:
        if self._fetcher is None:
            from monitor.runtime.pipeline import Pipeline

            self._fetcher = Pipeline.make_fetcher(self._config)
        return self._fetcher

    async def article(self, url: str) -> FetchedArticle:
        """Fetch ``url`` as the daemon fetches an item's page and build its article."""
        from monitor.analysis.extract import build_article
        from monitor.ingest.fetch import mask_url

        url = url.strip()
        if len(url) > MAX_URL_CHARS:
            return FetchedArticle(None, error=f"the URL is longer than {MAX_URL_CHARS} characters")
        try:
            page = await self._get().fetch(url, kind="page",
                                           max_bytes=self._config.fetch.max_page_bytes)
        except FetchError as exc:
            return FetchedArticle(None, error=f"could not fetch the page ({exc.kind}): {exc}")
        except (OSError, ValueError) as exc:  # the guard's own refusals come as FetchError
            log.info("playground fetch of %s failed", mask_url(url), exc_info=True)
            return FetchedArticle(None, error=f"could not fetch the page: {type(exc).__name__}")
        item = FeedItem(guid=page.url, link=page.url, canonical_url=None, title="", summary="",
                        published=None)
        source = ArticleInput(item=item, feed_url="playground", html=page.content)
        # Extraction is CPU work (trafilatura): off the event loop.
        article, page_error = await asyncio.to_thread(build_article, source)
        if page_error or not article.body:
            return FetchedArticle(None, final_url=page.url,
                                  error=f"no article text on the page: {page_error or 'empty'}")
        return FetchedArticle(article, final_url=page.url)

    async def aclose(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
