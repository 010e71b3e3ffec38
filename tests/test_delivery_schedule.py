"""Digests, quiet hours, throttling, backlog collapse and pacing, on a controlled clock.

Alerts are stored at chosen times (time-machine) and ``deliver_due(now=...)``
is run at chosen times; the messages land on a real local webhook receiver.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.delivery.deliverer import Deliverer
from monitor.delivery.pacing import DigestSchedule, QuietHours
from monitor.storage import Storage, open_storage
from tests.helpers.delivery import add_alert, channel, row, settings
from tests.helpers.servers import Site

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(tmp_path / "outbox.db")
    yield s
    s.close()


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)  # type: ignore[misc]


def messages(site: Site) -> list[dict]:
    return [r.json() for r in site.requests if r.method == "POST"]


def keys_in(text: str) -> set[str]:
    return set(re.findall(r"a\d+-\w+-hook", text))


def hook(site: Site, **kw: object) -> Deliverer:
    return Deliverer([channel(url=f"json://127.0.0.1:{site.port}/hook", **kw)], settings())


def test_daily_digest_time_is_local_and_survives_dst() -> None:
    daily = DigestSchedule.parse("daily at 08:00")
    # The night DST starts in Berlin (30 March 2025): still 08:00 local, now UTC+2.
    assert daily.next_after(local(2025, 3, 29, 9, 0), BERLIN) == local(2025, 3, 30, 8, 0)
    assert local(2025, 3, 30, 8, 0).hour == 6
    assert daily.next_after(local(2025, 3, 30, 7, 59), BERLIN) == local(2025, 3, 30, 8, 0)
    hourly = DigestSchedule.parse("hourly")
    assert hourly.next_after(datetime(2025, 1, 1, 10, 0, tzinfo=UTC), BERLIN) == \
        datetime(2025, 1, 1, 11, 0, tzinfo=UTC)
    assert DigestSchedule.parse("immediate").next_after(datetime.now(UTC), BERLIN) is None


def test_quiet_hours_across_midnight() -> None:
    quiet = QuietHours.parse("22:00-07:00")
    assert quiet.end_if_quiet(local(2025, 6, 1, 23, 30), BERLIN) == local(2025, 6, 2, 7, 0)
    assert quiet.end_if_quiet(local(2025, 6, 2, 3, 0), BERLIN) == local(2025, 6, 2, 7, 0)
    assert quiet.end_if_quiet(local(2025, 6, 2, 7, 0), BERLIN) is None
    assert quiet.end_if_quiet(local(2025, 6, 2, 12, 0), BERLIN) is None
    lunch = QuietHours.parse("12:00-13:30")
    assert lunch.end_if_quiet(local(2025, 6, 2, 12, 15), BERLIN) == local(2025, 6, 2, 13, 30)


def test_quiet_hours_hold_alerts_then_send_one_digest_and_critical_passes(
        store: Storage, receiver: Site) -> None:
    deliverer = hook(receiver, quiet_hours="22:00-07:00", timezone="Europe/Berlin")
    night = [add_alert(store, topic=t, at=local(2025, 6, 1, 23, m))
             for t, m in (("aid", 5), ("ceasefire", 10), ("aid", 20))]
    urgent = add_alert(store, topic="attack", severity="critical", at=local(2025, 6, 1, 23, 30))
    report = deliverer.deliver_due(store.outbox, now=local(2025, 6, 1, 23, 31))
    assert (report.sent, report.held) == (1, 3)
    (first,) = messages(receiver)
    assert first["title"].startswith("[attack]")
    assert row(store, night[0])["held"] == "quiet"
    assert deliverer.deliver_due(store.outbox, now=local(2025, 6, 2, 6, 59)).messages == 0
    report = deliverer.deliver_due(store.outbox, now=local(2025, 6, 2, 7, 0, 30))
    assert (report.sent, report.messages) == (3, 1)
    digest = messages(receiver)[-1]
    assert digest["message"].startswith("Quiet hours are over: 3 alerts.")
    assert keys_in(digest["message"]) == {row(store, i)["alert_key"] for i in night}
    assert digest["message"].index("aid (2)") < digest["message"].index("ceasefire (1)")
    assert row(store, urgent)["status"] == "sent" and store.outbox.counts() == {"sent": 4}


def test_hourly_digest_groups_the_hour_by_topic(store: Storage, receiver: Site) -> None:
    deliverer = hook(receiver, digest="hourly")
    t0 = datetime(2025, 1, 1, 10, 5, tzinfo=UTC)
    ids = [add_alert(store, topic=t, at=t0 + timedelta(minutes=m))
           for t, m in (("aid", 0), ("ceasefire", 10), ("aid", 20), ("aid", 40))]
    assert deliverer.deliver_due(store.outbox, now=t0 + timedelta(minutes=45)).held == 4
    assert messages(receiver) == []
    late = add_alert(store, topic="aid", at=datetime(2025, 1, 1, 11, 0, 10, tzinfo=UTC))
    report = deliverer.deliver_due(store.outbox, now=datetime(2025, 1, 1, 11, 0, 30, tzinfo=UTC))
    assert (report.sent, report.messages, report.held) == (4, 1, 1)  # `late` waits for 12:00
    (digest,) = messages(receiver)
    assert digest["message"].startswith("Digest (hourly): 4 alerts.")
    assert "aid (3)" in digest["message"] and "ceasefire (1)" in digest["message"]
    assert keys_in(digest["message"]) == {row(store, i)["alert_key"] for i in ids}
    assert row(store, late)["status"] == "pending"


def test_daily_digest_in_a_time_zone(store: Storage, receiver: Site) -> None:
    deliverer = hook(receiver, digest="daily at 08:00", timezone="Europe/Berlin")
    add_alert(store, at=local(2025, 6, 1, 9, 0))
    add_alert(store, at=local(2025, 6, 1, 21, 0))
    deliverer.deliver_due(store.outbox, now=local(2025, 6, 1, 21, 1))
    assert deliverer.deliver_due(store.outbox, now=local(2025, 6, 2, 7, 59)).messages == 0
    report = deliverer.deliver_due(store.outbox, now=local(2025, 6, 2, 8, 0, 5))
    assert (report.sent, report.messages) == (2, 1)


def test_throttle_collapses_the_rest_of_the_window_into_one_digest(
        store: Storage, receiver: Site) -> None:
    deliverer = hook(receiver, throttle=3, throttle_window="10m")
    t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    ids = [add_alert(store, at=t0) for _ in range(7)]
    report = deliverer.deliver_due(store.outbox, now=t0 + timedelta(seconds=5))
    assert (report.messages, report.sent, report.held) == (3, 3, 4)
    more = add_alert(store, at=t0 + timedelta(minutes=5))
    assert deliverer.deliver_due(store.outbox, now=t0 + timedelta(minutes=5, seconds=5)).held == 1
    assert len(messages(receiver)) == 3
    report = deliverer.deliver_due(store.outbox, now=t0 + timedelta(minutes=10, seconds=10))
    assert (report.messages, report.sent) == (1, 5)
    digest = messages(receiver)[-1]
    assert digest["message"].startswith("More than 3 alerts within 10 min: 5 alerts.")
    assert keys_in(digest["message"]) == {row(store, i)["alert_key"] for i in [*ids[3:], more]}
    # A new window: single alerts again.
    add_alert(store, at=t0 + timedelta(minutes=30))
    report = deliverer.deliver_due(store.outbox, now=t0 + timedelta(minutes=30, seconds=5))
    assert (report.messages, report.sent) == (1, 1)
    assert messages(receiver)[-1]["title"].startswith("[ceasefire] Story")


def test_a_channel_down_for_an_hour_drains_its_backlog_as_a_digest(
        store: Storage, receiver: Site) -> None:
    receiver.routes["/hook"] = (503, {}, b"down")
    deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook")],
                          settings(retry_base=60, retry_max=600))
    t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    ids = []
    for minute in range(0, 60, 2):  # 30 alerts over an hour, the delivery job every 2 min
        ids.append(add_alert(store, topic=("aid", "ceasefire")[minute % 4 // 2],
                             at=t0 + timedelta(minutes=minute)))
        deliverer.deliver_due(store.outbox, now=t0 + timedelta(minutes=minute, seconds=30))
    failed_posts = len(receiver.requests)
    assert 3 <= failed_posts <= 12  # backing off, not hammering
    assert store.outbox.counts() == {"pending": 30}
    receiver.routes["/hook"] = (200, {"Content-Type": "application/json"}, b"{}")
    report = deliverer.deliver_due(store.outbox, now=t0 + timedelta(hours=3))
    assert report.sent == 30 and report.messages <= 2
    text = "\n".join(m["message"] for m in messages(receiver)[-report.messages:])
    assert keys_in(text) == {row(store, i)["alert_key"] for i in ids}
    assert store.outbox.counts() == {"sent": 30}


def test_rate_limit_spaces_messages_to_a_channel(store: Storage, receiver: Site) -> None:
    for _ in range(3):
        add_alert(store)
    deliverer = hook(receiver, rate_limit=0.3)
    started = time.monotonic()
    assert deliverer.deliver_due(store.outbox).messages == 3
    assert time.monotonic() - started >= 0.55  # the 2nd and 3rd each 0.3 s after the last
    # The next run remembers the last send: a new alert waits its turn too.
    add_alert(store)
    started = time.monotonic()
    deliverer.deliver_due(store.outbox)
    assert time.monotonic() - started >= 0.2
    assert len(messages(receiver)) == 4


def test_run_budget_leaves_the_rest_for_the_next_run(store: Storage, receiver: Site) -> None:
    for _ in range(3):
        add_alert(store)
    deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook", rate_limit=5)],
                          settings(run_budget=1.0))
    assert deliverer.deliver_due(store.outbox).messages == 1  # waiting 5 s would pass the budget
    assert store.outbox.counts() == {"sent": 1, "pending": 2}
