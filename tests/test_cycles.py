"""The one cycle model (monitor/runtime/cycles.py) shared by ``newsmon once`` and the daemon."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from monitor.runtime.cycles import CycleTally, PollOutcome

START = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _ok(feed: str, **kw: Any) -> PollOutcome:
    return PollOutcome(feed=feed, ok=True, **kw)


def test_not_due_counts_as_considered_but_not_as_a_poll() -> None:
    tally = CycleTally(started=START, opened=0.0)
    tally.add(_ok("a", not_due=True))
    assert tally.feeds_seen == {"a"} and tally.polls == 0
    assert not tally.complete(frozenset({"a"}), window=60, now=1000.0)  # no poll yet


def test_complete_when_every_feed_was_seen_or_the_window_passed() -> None:
    feeds = frozenset({"a", "b"})
    tally = CycleTally(started=START, opened=100.0).add_all([_ok("a", new_items=3, matches=2)])
    assert not tally.complete(feeds, window=60, now=120.0)
    assert tally.complete(feeds, window=60, now=160.0)  # window over, one poll made
    tally.add(PollOutcome(feed="b", ok=False, error_kind="http"))
    assert tally.complete(feeds, window=60, now=101.0)


def test_figures_add_up_and_name_the_last_database_error() -> None:
    tally = CycleTally(started=START, opened=0.0).add_all([
        _ok("a", new_items=3, matches=2, alerts=4),
        PollOutcome(feed="b", ok=False, error_kind="database", error="disk I/O error"),
        PollOutcome(feed="c", ok=False, error_kind="database", error="database is locked"),
    ])
    figures = tally.figures()
    assert (figures.feeds_ok, figures.feeds_failed, figures.items_new, figures.matches,
            figures.alerts) == (1, 2, 3, 2, 4)
    assert figures.error == "database: database is locked"
    assert tally.figures(network_down=True).error == "network down"


def test_summary_reads_like_the_log_line() -> None:
    assert _ok("a", items=5, new_items=2, matches=1, alerts=2).summary() == (
        "5 items, 2 new, 1 matches, 2 alerts")
    assert PollOutcome(feed="a", ok=False, error_kind="dns", error="no such host",
                       network_down=True).summary() == (
        "failed (dns): no such host (network down: not counted)")
