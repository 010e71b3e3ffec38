"""The GUID-churn breaker as a pure function (monitor/ingest/churn.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from monitor.config import FetchSettings
from monitor.ingest.churn import BreakerState, calm, judge

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SETTINGS = FetchSettings(churn_ratio=0.8, churn_polls=3, churn_min_items=5)
FRESH = BreakerState(feed_id=7, label="wire", url="https://wire.example/rss", streak=0,
                     held_since=None, has_items=True)


def test_the_first_poll_of_a_feed_is_never_churn() -> None:
    decision = judge(replace(FRESH, has_items=False), items=20, new_items=20, settings=SETTINGS,
                     now=NOW)
    assert decision.streak == 0 and not decision.held and decision.notice is None


def test_small_polls_and_mostly_known_items_do_not_count() -> None:
    assert judge(FRESH, items=4, new_items=4, settings=SETTINGS, now=NOW).streak == 0
    assert judge(FRESH, items=10, new_items=8, settings=SETTINGS, now=NOW).streak == 0  # not > 80%
    assert judge(FRESH, items=10, new_items=9, settings=SETTINGS, now=NOW).streak == 1


def test_the_breaker_opens_on_the_third_churning_poll_with_one_notice() -> None:
    state = FRESH
    decisions = []
    for _ in range(4):
        decision = judge(state, items=10, new_items=10, settings=SETTINGS, now=NOW)
        decisions.append(decision)
        state = replace(state, streak=decision.streak, held_since=decision.held_since)
    assert [d.held for d in decisions] == [False, False, True, True]
    assert [d.notice is not None for d in decisions] == [False, False, True, False]
    opened = decisions[2]
    assert opened.changed and opened.held_since == NOW
    assert opened.notice is not None and opened.notice.title == "Feed alerts held: wire"
    assert opened.notice.key == "feed-churn-7-2026-03-01T12:00:00+00:00"


def test_a_calm_poll_closes_an_open_breaker_and_says_so_once() -> None:
    held = replace(FRESH, streak=3, held_since=NOW - timedelta(hours=2))
    decision = calm(held, settings=SETTINGS, now=NOW)
    assert decision is not None and not decision.held and decision.changed
    assert decision.notice is not None and decision.notice.severity == "normal"
    assert decision.notice.key.startswith("feed-unchurn-7-")
    assert calm(FRESH, settings=SETTINGS, now=NOW) is None


def test_mostly_known_items_close_the_breaker_too() -> None:
    held = replace(FRESH, streak=5, held_since=NOW - timedelta(hours=1))
    decision = judge(held, items=10, new_items=1, settings=SETTINGS, now=NOW)
    assert decision.streak == 0 and not decision.held and decision.notice is not None
