"""Bursts through the keeper and a real SQLite store: the rates are read from storage (when each
article was first seen), the burst escalates the alert (routing sees the raised severity) and
the note says so; the outbox row carries the story id and its note."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import time_machine

from monitor.identity import article_key, item_planner
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TopicMatch
from monitor.runtime.stories import StoryKeeper
from monitor.storage import open_storage
from monitor.storage.stories import StoryRepository
from monitor.stories.bursts import BurstPolicy

START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
TEXT = ("Russia and Ukraine agreed a ceasefire along the front line near Zaporizhzhia on Tuesday after "
        "three days of talks in Istanbul mediated by Turkey, officials in both capitals said.")


def loud(match: TopicMatch) -> Sequence[str]:
    """desk hears everything; pager only high and critical."""
    return ["desk", "pager"] if match.severity in ("high", "critical") else ["desk"]


def article(n: int) -> ProcessedArticle:
    url = f"https://outlet{n % 3}.test/story/{n}"
    item = FeedItem(guid=url, link=url, canonical_url=url, title="Ceasefire agreed near Zaporizhzhia",
                    summary=TEXT, published=None, content_hash=f"h{n}")
    body = Article(title=item.title, summary=TEXT, body=TEXT, text_source="summary", url=url,
                   feed_url=f"https://outlet{n % 3}.test/feed.xml")
    match = TopicMatch(topic="ceasefire", score=3.0, threshold=1.0, severity="normal",
                       evidence=(EvidenceSentence("body", TEXT, TEXT.replace("ceasefire", "**ceasefire**")),))
    return ProcessedArticle(item=item, article=body, matches=(match,))


def test_a_story_bursting_after_its_alert_gets_one_escalated_follow_up(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "bursts.db")
    clock = {"now": START}
    keeper = StoryKeeper(StoryRepository(store.connection), clock=lambda: clock["now"], bursts=BurstPolicy())
    times = [START + timedelta(hours=3 * k) for k in range(10)]  # a quiet day: one every 3 hours
    burst_start = times[-1] + timedelta(hours=3)
    times += [burst_start + timedelta(minutes=6 * k) for k in range(9)]  # then nine within the hour
    alerts: list[tuple[str, str, str | None, str | None]] = []
    for n, moment in enumerate(times):
        clock["now"] = moment
        processed = article(n)
        with time_machine.travel(moment, tick=False):
            context = keeper.plan_context(processed)
            feed_id = store.feeds.get(processed.article.feed_url).id
            result = store.items.record_item(
                feed_id, "Wire", processed, article_key=article_key(processed.item),
                plan=item_planner(processed.matches, loud, story=context))
        for alert_id in result.alert_ids:
            row = store.db.execute("SELECT alert_key, severity, story_id, body FROM alerts WHERE id = ?",
                                   (alert_id,)).fetchone()
            alerts.append(tuple(row))
    story_id = alerts[0][2]
    assert story_id is not None
    first, *rest = alerts
    assert first == (f"story-{story_id}-desk-0-ceasefire", "normal", story_id, None)
    # The burst: one follow-up on desk (raised to high), and pager hears of the story for the first time.
    assert [(key, severity) for key, severity, _, _ in rest] == [
        (f"story-{story_id}-desk-1-ceasefire", "high"), (f"story-{story_id}-pager-0-ceasefire", "high")]
    notes = [note for _, _, _, note in rest]
    assert notes[0].startswith("follow-up") and "burst: 6 articles in the last hour, baseline" in notes[0]
    assert notes[1].startswith("burst: 6 articles in the last hour, baseline")
    store.close()
