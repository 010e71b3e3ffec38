"""The outbox: oldest first, failures wait and block the channel, notices once per key."""

from __future__ import annotations

from datetime import timedelta

from monitor.records import ChannelState, to_second, utcnow
from monitor.storage import Storage
from tests.helpers.delivery import due_alerts, record
from tests.helpers.storage import (
    FEED_A,
    make_item,
    processed,
    two_feed_store,  # noqa: F401  (the store fixture)
)


def test_outbox_is_oldest_first_and_failures_wait(store: Storage) -> None:
    feed = store.feeds.get(FEED_A)
    for n in range(3):
        record(store, feed.id, "A", processed(make_item(str(n), f"https://n.example/{n}")),
               lambda m: ["slack"])
    outbox = store.outbox
    first, second, third = [a for a, _ in outbox.due_outbox("slack")]
    assert first.id < second.id < third.id
    outbox.mark_attempt_failed("slack", [first.id], error="HTTP 500",
                               retry_at=utcnow() + timedelta(seconds=600))
    outbox.mark_delivered("slack", [second.id], kind="alert")
    assert [a.id for a in due_alerts(store)] == [third.id]
    later = utcnow().replace(year=utcnow().year + 1)
    assert [a.id for a in due_alerts(store, now=later)] == [first.id, third.id]
    outbox.mark_attempt_failed("slack", [third.id], error="HTTP 500", retry_at=utcnow(),
                               dead_ids=[third.id])
    assert outbox.counts() == {"pending": 1, "sent": 1, "dead": 1}


def test_channel_state_tracks_failures_and_the_last_message(store: Storage) -> None:
    outbox = store.outbox
    assert outbox.channel_state("slack") == ChannelState()
    retry_at = utcnow() + timedelta(seconds=90)
    outbox.mark_attempt_failed("slack", [], error="HTTP 429", retry_at=retry_at)
    state = outbox.channel_state("slack")
    assert state.failures == 1 and state.last_error == "HTTP 429"
    assert state.blocked_until is not None and state.blocked_until >= to_second(retry_at)
    sent_at = utcnow()
    outbox.mark_delivered("slack", [], kind="alert", now=sent_at)
    # A success ends the run of failures; when the last failure was stays (status shows it).
    assert outbox.channel_state("slack") == ChannelState(
        last_sent_at=to_second(sent_at), last_failure_at=state.last_failure_at)
    assert outbox.recent_messages("slack", sent_at - timedelta(minutes=1)) == [to_second(sent_at)]


def test_notices_are_queued_once_per_key(store: Storage) -> None:
    outbox = store.outbox
    assert len(outbox.enqueue_notice("feed-1-down", "Feed A failing", "timeout", ["admin"])) == 1
    assert outbox.enqueue_notice("feed-1-down", "Feed A failing", "timeout", ["admin"]) == []
    (notice,) = due_alerts(store)
    assert notice.kind == "notice" and notice.body == "timeout"
    assert notice.alert_key == "n-feed-1-down-admin"


def test_requeue_by_id_or_key_and_retry_dead(store: Storage) -> None:
    outbox = store.outbox
    (alert_id,) = outbox.enqueue_notice("k", "t", "b", ["admin"])
    outbox.mark_attempt_failed("admin", [alert_id], error="x", retry_at=utcnow(),
                               dead_ids=[alert_id])
    assert outbox.retry_dead() == 1 and outbox.counts() == {"pending": 1}
    outbox.mark_delivered("admin", [alert_id], kind="alert")
    assert outbox.requeue("n-k-admin") == 1 and outbox.counts() == {"pending": 1}
    assert outbox.requeue(str(alert_id)) == 1
    assert outbox.requeue("no-such-alert") == 0
