"""The task queue: procrastinate on the cluster's PostgreSQL database.

One task, ``newsmon.process_item``: extract → analyse → match one item and record
it (article, matches, outbox rows in one transaction). The poller defers it in the
SAME transaction as the item's "queued" row (``ClusterStore.queue_items`` hands
this module's :func:`defer_on` the transaction's connection), so a crash between
"seen" and "queued" cannot lose an article: both commit, or neither.

Why procrastinate (and not pgqueuer, nor a home-made queue): it defers on a
caller's connection (``configure(connection=...)``), which is exactly the outbox
guarantee; its workers heartbeat and their stalled jobs can be retried
(``get_stalled_jobs`` / ``retry_job``), it has retries with backoff, LISTEN/NOTIFY
wake-ups, and it ships its schema as SQL we apply ourselves, idempotently.

A task's arguments are JSON: the feed (url, id, label), the item (``item_args``),
whether this was the feed's first poll (backlog: stored, not alerted) and whether
the churn breaker held the feed's alerts at poll time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from monitor._optional import require
from monitor.models import FeedItem
from monitor.records import iso, parse_iso

__all__ = ["QUEUE", "TASK_NAME", "defer_on", "install_queue_schema", "item_args", "item_from_args",
           "make_app", "set_handler"]

log = logging.getLogger(__name__)

QUEUE = "newsmon_items"
TASK_NAME = "newsmon.process_item"

# The handler a worker process runs for each task (set by ``newsmon worker``).
_handler: Callable[[dict[str, Any]], Awaitable[None]] | None = None


def set_handler(handler: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
    """Install what ``process_item`` runs in this process (a worker's ItemHandler)."""
    global _handler
    _handler = handler


async def _process_item(**task: Any) -> None:
    if _handler is None:
        raise RuntimeError("no item handler in this process (only `newsmon worker` runs tasks)")
    await _handler(task)


def make_app(url: str, *, pool_size: int = 2) -> Any:
    """A procrastinate App on ``url`` with the item task registered.

    Deferral from the poller uses the caller's connection (no pool opened);
    a worker opens the app's pool (``async with app.open_async()``).
    """
    procrastinate = require("procrastinate", "postgresql")
    # Its INFO lines print every job's arguments: feed URLs, which may carry tokens.
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=pool_size,
                                               kwargs={"application_name": "newsmon-queue"})
    app = procrastinate.App(connector=connector)
    # Retries cover a database that refuses a write for a moment (StoreError); an item
    # whose processing fails is recorded as failed, not retried.
    app.task(name=TASK_NAME, queue=QUEUE, retry=procrastinate.RetryStrategy(
        max_attempts=8, exponential_wait=2))(_process_item)
    return app


def install_queue_schema(conn: Any) -> None:
    """Apply procrastinate's own schema on ``conn`` unless it is there (idempotent; the
    caller holds the schema advisory lock: ``storage.leases.install_cluster_schema``)."""
    if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is not None:
        return
    schema = require("procrastinate.schema", "postgresql")
    conn.execute(schema.SchemaManager.get_schema())
    log.info("installed the task queue's schema (procrastinate)")


def defer_on(app: Any, conn: Any, tasks: list[dict[str, Any]]) -> list[int]:
    """Defer one ``process_item`` job per entry of ``tasks`` on ``conn``'s open
    transaction (committed, or rolled back, with the caller's writes)."""
    if not tasks:
        return []
    deferrer = app.tasks[TASK_NAME].configure(connection=conn)
    return list(deferrer.batch_defer(*tasks))


def item_args(item: FeedItem) -> dict[str, Any]:
    """A FeedItem as JSON for a task's arguments."""
    values = asdict(item)
    values["published"] = iso(item.published)
    values["authors"] = list(item.authors)
    values["tags"] = list(item.tags)
    return values


def item_from_args(values: dict[str, Any]) -> FeedItem:
    """The FeedItem back from :func:`item_args`."""
    published: datetime | None = parse_iso(values.get("published"))
    return FeedItem(
        guid=values["guid"], link=values.get("link"), canonical_url=values.get("canonical_url"),
        title=values.get("title") or "", summary=values.get("summary") or "",
        published=published, authors=tuple(values.get("authors") or ()),
        tags=tuple(values.get("tags") or ()), content_hash=values.get("content_hash") or "",
        language=values.get("language"))
