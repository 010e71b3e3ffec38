"""The worker pool: extract → analyse → match for each new item, off the event loop.

The stages run in a supervised pool of processes (``runtime/supervisor.py``;
"spawn", one process per core by default), or in this process with
``workers: 0`` (tests, small installs). Feed parsing goes through here too, so
a huge feed never blocks the loop.

One item never fails the others: each comes back as a ``ProcessedArticle`` or
an :class:`ItemFailure` with its reason. A worker that dies under an item (the
OOM killer) or runs past its CPU deadline is replaced and the item retried,
at most ``MAX_ATTEMPTS`` times; a stage that raises fails its item at once
(the same input would raise again).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitor.config import Config
from monitor.ingest.parse import parse_feed
from monitor.models import ArticleInput, FeedItem, ParsedFeed, ProcessedArticle, StageError
from monitor.runtime.supervisor import (
    ITEM_CPU_SECONDS,
    FailureStreak,
    PoolHealth,
    WorkerLost,
    WorkerPool,
    WorkerStartError,
)
from monitor.runtime.worker import (
    Stage,
    WorkerSettings,
    build_stages,
    parse_in_worker,
    process_in_worker,
    run_stages,
)

__all__ = ["MAX_ATTEMPTS", "PARSE_IN_WORKER_BYTES", "ArticleProcessor", "ItemFailure"]

log = logging.getLogger(__name__)

# Feed bodies at least this big are parsed in the worker processes (when running).
PARSE_IN_WORKER_BYTES = 1024 * 1024
# Tries of one item when its worker dies under it (the first and two retries).
MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """An item the stages could not process, and why (recorded as a failed item)."""

    item: FeedItem
    reason: str
    attempts: int = 1


class ArticleProcessor:
    """Runs extract → analyse → match, in a process pool or in this process."""

    def __init__(self, config: Config, *, workers: int | None = None,
                 cpu_seconds: float = ITEM_CPU_SECONDS) -> None:
        self.settings = WorkerSettings.from_config(config)
        wanted = config.analysis.workers if workers is None else workers
        self.workers = (os.cpu_count() or 1) if wanted is None else wanted
        self.cpu_seconds = cpu_seconds
        self._pool: WorkerPool | None = None
        self._local: list[Stage] | None = None  # the stages, when run in this process
        self._health = PoolHealth()
        self._building: asyncio.Future[list[Stage]] | None = None
        self.streak = FailureStreak()  # items failing in a row: processing has stopped?

    def start(self) -> None:
        """Start the worker pool (or build the stages in this process); idempotent.

        The pool needs the running event loop (it watches the workers' pipes).
        """
        if self.workers > 0 and self._pool is None:
            self._pool = WorkerPool(self.workers, self.settings, cpu_seconds=self.cpu_seconds)
            self._pool.start()
        elif self.workers == 0 and self._local is None:
            self._local = build_stages(self.settings)

    @property
    def health(self) -> PoolHealth:
        """The pool's figures (kept after close, for reports)."""
        return self._pool.health if self._pool is not None else self._health

    async def process(self, sources: Sequence[ArticleInput]) -> list[ProcessedArticle | ItemFailure]:
        """Each source processed, or an ItemFailure: one item never fails the others."""
        if self.workers == 0 and self._local is None:
            # Compiling the rules and loading spaCy takes a second: not on the loop, and
            # once for all the polls that arrive meanwhile.
            if self._building is None:
                self._building = asyncio.ensure_future(asyncio.to_thread(build_stages, self.settings))
            self._local = await asyncio.shield(self._building)
        self.start()
        if self._pool is not None:
            results = list(await asyncio.gather(*(self._in_pool(s) for s in sources)))
        else:
            results = [self._in_process(s) for s in sources]
        for result in results:
            if isinstance(result, ItemFailure):
                self.streak.failure(result.reason)
            else:
                self.streak.success()
        return results

    def _in_process(self, source: ArticleInput) -> ProcessedArticle | ItemFailure:
        assert self._local is not None
        try:
            return run_stages(source, self._local)
        except Exception as exc:  # a bug or a library failure: this item only
            log.exception("item %s: processing failed", source.item.link or source.item.guid)
            return ItemFailure(source.item, f"{type(exc).__name__}: {exc}"[:500])

    async def _in_pool(self, source: ArticleInput) -> ProcessedArticle | ItemFailure:
        assert self._pool is not None
        reason = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await self._pool.call(process_in_worker, source)
            except WorkerLost as exc:
                reason = str(exc)
                self._pool.health.last_loss = reason
                log.warning("item %s: %s (attempt %d of %d)", source.item.link or source.item.guid,
                            reason, attempt, MAX_ATTEMPTS)
            except WorkerStartError as exc:
                return ItemFailure(source.item, f"no worker process could start: {exc}", attempt)
            except Exception as exc:  # the stage raised in the worker: the same input would again
                return ItemFailure(source.item, f"{type(exc).__name__}: {exc}"[:500], attempt)
        return ItemFailure(source.item, f"{reason} (tried {MAX_ATTEMPTS} times)", MAX_ATTEMPTS)

    async def parse(self, content: bytes, **kwargs: Any) -> ParsedFeed:
        """Parse feed bytes off the event loop.

        feedparser is pure Python and holds the GIL: in a thread, a big feed
        still slows the loop down (it gets the GIL back every few ms). A body
        over ``PARSE_IN_WORKER_BYTES`` goes to the worker processes when they
        are running; small ones (almost all) stay in a thread, where the cost
        of shipping bytes to another process would exceed the parse.
        """
        if self._pool is not None and len(content) >= PARSE_IN_WORKER_BYTES:
            try:
                parsed: ParsedFeed = await self._pool.call(parse_in_worker, (content, kwargs))
            except (WorkerLost, WorkerStartError) as exc:
                raise StageError(f"parsing the feed stopped its worker: {exc}",
                                 kind="internal") from None
            return parsed
        return await asyncio.to_thread(parse_feed, content, **kwargs)

    def worker_pids(self) -> list[int]:
        """The pool's process ids (for memory figures); empty when in-process."""
        return self._pool.pids() if self._pool is not None else []

    def close(self) -> None:
        """Stop the workers; a busy one is killed, not waited for (a SIGTERM is prompt)."""
        if self._pool is not None:
            self._pool.close()
            self._health, self._pool = self._pool.health, None
