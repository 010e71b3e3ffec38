"""Helpers for the delivery and storage tests: outbox rows written the way the pipeline
writes them, and test-only reads of the outbox."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import time_machine

from monitor.config import ChannelConfig, DeliverySettings
from monitor.identity import Route, article_key, item_planner
from monitor.models import (
    Article,
    EvidenceSentence,
    FeedItem,
    PendingAlert,
    ProcessedArticle,
    TopicMatch,
)
from monitor.records import RecordResult
from monitor.storage import Storage

_counter = itertools.count(1)


def add_alert(store: Storage, channel: str = "hook", *, topic: str = "ceasefire",
              severity: str = "normal", title: str | None = None, url: str | None = None,
              evidence: tuple[str, ...] = ("The **ceasefire** holds in the east.",),
              at: datetime | None = None, feed: str = "http://feeds.test/a.xml") -> int:
    """One matched item with one outbox row for ``channel``; returns the alert id.

    ``at`` is when it was stored (the outbox row's created_at).
    """
    n = next(_counter)
    title = title if title is not None else f"Story {n}"
    url = url if url is not None else f"https://news.test/story/{n}"
    item = FeedItem(guid=f"g{n}", link=url, canonical_url=url, title=title,
                    summary="summary", published=datetime(2024, 12, 25, 10, 0, tzinfo=UTC),
                    content_hash=f"h{n}")
    article = Article(title=title, summary="summary", body="body", text_source="summary",
                      url=url, feed_url=feed)
    match = TopicMatch(
        topic=topic, score=3.0, threshold=1.0, severity=severity,
        evidence=tuple(EvidenceSentence("body", e.replace("**", ""), e, (topic,)) for e in evidence),
    )
    processed = ProcessedArticle(item=item, article=article, matches=(match,))
    with _clock(at):
        feed_id = store.feeds.get(feed).id
        result = record(store, feed_id, "Test feed", processed, lambda m: [channel])
    return result.alert_ids[0]


def record(storage: Storage, feed_id: int, source: str, processed: ProcessedArticle,
           route: Route) -> RecordResult:
    """The pipeline's item write: keys from ``monitor.identity``, matches routed by ``route``."""
    return storage.items.record_item(
        feed_id, source, processed, article_key=article_key(processed.item),
        plan=item_planner(processed.matches, route))


def due_alerts(storage: Storage, *, now: datetime | None = None) -> list[PendingAlert]:
    """Every channel's due pending alerts, oldest first."""
    outbox = storage.outbox
    due = [a for ch in outbox.due_channels(now=now) for a, _ in outbox.due_outbox(ch, now=now)]
    return sorted(due, key=lambda a: a.id)


@contextmanager
def _clock(at: datetime | None) -> Iterator[None]:
    if at is None:
        yield
        return
    with time_machine.travel(at, tick=False):
        yield


def channel(name: str = "hook", url: str = "json://127.0.0.1:9/hook", **kw: Any) -> ChannelConfig:
    return ChannelConfig(name=name, url=url, **{"rate_limit": 0, **kw})


def settings(**kw: Any) -> DeliverySettings:
    """Fast settings for tests: short timeout, short backoff."""
    base: dict[str, Any] = {"timeout": 2.0, "retry_base": 1.0, "retry_max": 8.0, "batch": 50}
    return DeliverySettings(**{**base, **kw})


def statuses(store: Storage) -> dict[str, int]:
    return store.outbox.counts()


def row(store: Storage, alert_id: int) -> dict[str, Any]:
    return next(iter(store.db.query("SELECT * FROM alerts WHERE id = ?", (alert_id,))))
