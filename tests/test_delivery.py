"""Delivery through apprise to real servers on 127.0.0.1: webhook, Slack, SMTP.

Failures (500, 429 + Retry-After, a hung endpoint), order, dead letters and
the admin channel, and secrets kept out of logs, errors and the database.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from apprise.plugins.slack import NotifySlack

from monitor.delivery.deliverer import Deliverer
from monitor.ingest.httpdates import retry_after_seconds as parse_retry_after
from monitor.storage import Storage, open_storage
from tests.helpers.delivery import add_alert, channel, row, settings
from tests.helpers.servers import Mailbox, Site

SLACK_PATH = "/services/T1ABCDEFG/B1ABCDEFG/abcdefghijklmnopqrstuvwx"
SLACK_URL = "slack://T1ABCDEFG/B1ABCDEFG/abcdefghijklmnopqrstuvwx"
HOSTILE = "<!here> & <!channel> <@U123ABC> <http://evil.test|click me> [x](http://evil.test)"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(tmp_path / "outbox.db")
    yield s
    s.close()


@pytest.fixture
def slack_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A local receiver standing in for hooks.slack.com (the plugin's class attribute,
    restored by monkeypatch after the test)."""
    with Site(routes={SLACK_PATH: (200, {"Content-Type": "text/plain"}, b"ok")}) as site:
        monkeypatch.setattr(NotifySlack, "webhook_url", site.url("/services"))
        yield site


def posts(site: Site, path: str = "/hook") -> list[dict]:
    return [r.json() for r in site.requests if r.method == "POST" and r.path.startswith(path)]


def test_json_webhook_gets_each_alert_in_order_and_marks_it_sent(
        store: Storage, receiver: Site) -> None:
    ids = [add_alert(store, "hook") for _ in range(3)]
    deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook")], settings())
    report = deliverer.deliver_due(store.outbox)
    assert (report.sent, report.failed, report.messages) == (3, 0, 3)
    bodies = posts(receiver)
    keys = [row(store, i)["alert_key"] for i in ids]
    assert [re.search(r"Alert id: (\S+)", b["message"]).group(1) for b in bodies] == keys
    assert bodies[0]["title"].startswith("[ceasefire] Story")
    assert "> The ceasefire holds in the east." in bodies[0]["message"]  # plain text: no ** marks
    assert all(row(store, i)["status"] == "sent" for i in ids)
    assert deliverer.deliver_due(store.outbox).messages == 0  # nothing sent twice


def test_slack_payload_is_mrkdwn_escaped_and_within_limits(
        store: Storage, slack_site: Site) -> None:
    long = "More words about the front line and the talks. " * 60
    add_alert(store, "slack", title=f"Title {HOSTILE}", evidence=(
        f"Feed text {HOSTILE} and the **ceasefire** is fragile & tense.", long, long, long))
    deliverer = Deliverer([channel("slack", SLACK_URL, max_length=1200)], settings())
    assert deliverer.deliver_due(store.outbox).sent == 1
    (request,) = [r for r in slack_site.requests if r.path == SLACK_PATH]
    payload = request.json()
    assert payload["mrkdwn"] is True
    attachment = payload["attachments"][0]
    text, title = attachment["text"], attachment["title"]
    # Our link and the emphasis are real Slack syntax...
    assert re.search(r"<https://news\.test/story/\d+\|https://news\.test/story/\d+>", text)
    assert "*ceasefire*" in text
    # ...and nothing from the feed is: no mention, no channel ping, no disguised link.
    for sequence in ("<!here", "<!channel", "<@U123", "<http://evil", "|click me>"):
        assert sequence not in text and sequence not in title, sequence
    assert "&lt;!here&gt;" in text and "&lt;@U123ABC&gt;" in text and "&amp;" in text
    assert "&lt;!here&gt;" in title
    assert len(text) <= 1200
    assert re.search(r"Alert id: a\d+-ceasefire-slack", text)


def test_email_has_subject_html_and_text_parts_with_evidence_and_link(
        store: Storage, mailbox: Mailbox) -> None:
    add_alert(store, "mail", title="Talks <b>resume</b>", url="https://news.test/a?x=1&y=2",
              evidence=("The **ceasefire** holds <script>alert(1)</script>.",))
    url = (f"mailto://127.0.0.1:{mailbox.port}?from=newsmon@example.org&to=desk@example.org"
           "&smtp=127.0.0.1")
    assert Deliverer([channel("mail", url)], settings()).deliver_due(store.outbox).sent == 1
    (message,) = mailbox.messages
    assert str(message["subject"]) == "[ceasefire] Talks <b>resume</b>"
    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "<mark>ceasefire</mark>" in html and "&lt;script&gt;" in html and "<script>" not in html
    assert 'href="https://news.test/a?x=1&amp;y=2"' in html
    assert "ceasefire holds" in text and "https://news.test/a?x=1&y=2" in text
    assert re.search(r"Alert id: a\d+-ceasefire-mail", text)


class Script:
    """A receiver that answers from a script: 500, then 429 + Retry-After, then
    hangs past the send timeout, then 200 for good. Records (time, status, alert id)."""

    def __init__(self, hang: float) -> None:
        self.steps = ["500", "429", "hang"]
        self.hang = hang
        self.log: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        body = json.loads(handler.server.site.requests[-1].body)  # type: ignore[attr-defined]
        key = re.search(r"Alert id: (\S+)", body["message"]).group(1)
        with self.lock:
            step = self.steps.pop(0) if self.steps else "ok"
            self.log.append((time.monotonic(), step, key))
        if step == "500":
            return 500, {}, b"oops"
        if step == "429":
            return 429, {"Retry-After": "2"}, b"slow down"
        if step == "hang":
            time.sleep(self.hang)
            return 503, {}, b"late"
        return 200, {"Content-Type": "application/json"}, b"{}"


def test_500_then_429_then_hang_then_recovery_loses_nothing_and_keeps_order(
        store: Storage) -> None:
    script = Script(hang=4.0)
    with Site(routes={"/hook": script}) as site:
        ids = [add_alert(store, "hook") for _ in range(5)]
        keys = [row(store, i)["alert_key"] for i in ids]
        deliverer = Deliverer([channel(url=f"json://127.0.0.1:{site.port}/hook")],
                              settings(timeout=1.0, retry_base=0.2, retry_max=0.5))
        runs: list[float] = []
        deadline = time.monotonic() + 20
        while store.outbox.counts().get("sent", 0) < 5 and time.monotonic() < deadline:
            started = time.monotonic()
            deliverer.deliver_due(store.outbox)
            runs.append(time.monotonic() - started)
            time.sleep(0.05)
    assert store.outbox.counts() == {"sent": 5}
    steps = [s for _, s, _ in script.log]
    assert steps[:4] == ["500", "429", "hang", "ok"]
    # The first alert was the one retried each time: nothing overtook it.
    assert [k for _, s, k in script.log if s == "ok"] == keys
    assert {k for _, s, k in script.log if s != "ok"} == {keys[0]}
    # Retry-After: 2 was honoured (the hang came at least 2 s after the 429).
    t429 = next(t for t, s, _ in script.log if s == "429")
    thang = next(t for t, s, _ in script.log if s == "hang")
    assert thang - t429 >= 1.9
    # The hung endpoint cost about the timeout, not the 4 s it hung.
    assert max(runs) < 2.5
    first = row(store, ids[0])
    assert first["attempts"] == 4 and first["last_error"] is None


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:30 GMT", now=now) == 90
    assert parse_retry_after("soon") is None


def test_a_refused_message_dies_after_max_attempts_and_is_reported(
        store: Storage, receiver: Site) -> None:
    receiver.routes["/refuse"] = (400, {}, b"bad request")
    alert_id = add_alert(store, "news")
    deliverer = Deliverer(
        [channel("news", f"json://127.0.0.1:{receiver.port}/refuse"),
         channel("ops", f"json://127.0.0.1:{receiver.port}/hook", admin=True)],
        settings(max_attempts=2))
    now = datetime.now(UTC)
    assert deliverer.deliver_due(store.outbox, now=now).failed == 1
    assert deliverer.deliver_due(store.outbox, now=now).failed == 0  # the channel is backing off
    report = deliverer.deliver_due(store.outbox, now=now + timedelta(minutes=5))
    assert report.dead == 1
    assert row(store, alert_id)["status"] == "dead"
    deliverer.deliver_due(store.outbox, now=now + timedelta(minutes=5))
    (notice,) = posts(receiver, "/hook")
    key = row(store, alert_id)["alert_key"]
    assert notice["title"] == "[newsmon] Alerts to news could not be delivered"
    assert key in notice["message"] and "HTTP 400" in notice["message"]
    assert str(receiver.port) not in notice["message"]  # no channel URL in it


def test_an_outage_kills_by_age_not_by_attempts(store: Storage, receiver: Site) -> None:
    receiver.routes["/down"] = (500, {}, b"down")
    t0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    alert_id = add_alert(store, "news", at=t0)
    deliverer = Deliverer([channel("news", f"json://127.0.0.1:{receiver.port}/down")],
                          settings(max_attempts=2, max_age="1d"))
    for hours in (0, 1, 2, 3, 4):
        assert deliverer.deliver_due(store.outbox, now=t0 + timedelta(hours=hours)).dead == 0
    assert row(store, alert_id)["attempts"] == 5
    assert deliverer.deliver_due(store.outbox, now=t0 + timedelta(days=1, hours=1)).dead == 1
    assert row(store, alert_id)["status"] == "dead"


def test_admin_notices_are_rate_limited_into_a_digest(store: Storage, receiver: Site) -> None:
    for n in range(8):
        store.outbox.enqueue_notice(f"feed-{n}-failing", f"Feed {n} failing", "timeout", ["ops"])
    deliverer = Deliverer([channel("ops", f"json://127.0.0.1:{receiver.port}/hook", admin=True)],
                          settings(admin_throttle=3, admin_window=3600))
    now = datetime.now(UTC)
    deliverer.deliver_due(store.outbox, now=now)
    assert len(posts(receiver)) == 3  # the throttle's allowance
    deliverer.deliver_due(store.outbox, now=now + timedelta(minutes=30))
    assert len(posts(receiver)) == 3  # the rest waits for the window to end
    deliverer.deliver_due(store.outbox, now=now + timedelta(minutes=61))
    bodies = posts(receiver)
    assert len(bodies) == 4
    assert "5 alerts" in bodies[-1]["title"]
    for n in range(3, 8):
        assert f"Feed {n} failing" in bodies[-1]["message"]
    assert store.outbox.counts() == {"sent": 8}


def test_alerts_for_a_removed_channel_fail_and_die(store: Storage) -> None:
    alert_id = add_alert(store, "gone")
    deliverer = Deliverer([], settings(max_attempts=1))
    report = deliverer.deliver_due(store.outbox)
    assert report.dead == 1
    assert "no longer configured" in row(store, alert_id)["last_error"]


def test_log_channel_writes_each_alert_to_the_log(
        store: Storage, caplog: pytest.LogCaptureFixture) -> None:
    add_alert(store, "log")
    with caplog.at_level("INFO", logger="monitor.delivery.deliverer"):
        assert Deliverer([], settings()).deliver_due(store.outbox).sent == 1
    assert re.search(r"ALERT a\d+-ceasefire-log \[ceasefire\] Story", caplog.text)


def test_a_slow_dripping_endpoint_is_cut_off_at_the_timeout(store: Storage) -> None:
    def drip(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        # Headers one byte at a time: each read is quick, so a read timeout never fires.
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the client gave up, as it should
        handler.wfile = io.BytesIO()  # type: ignore[assignment]  # the rest goes nowhere
        return 200, {}, b""

    with Site(routes={"/hook": drip}) as site:
        alert_id = add_alert(store, "hook")
        deliverer = Deliverer([channel(url=f"json://127.0.0.1:{site.port}/hook")],
                              settings(timeout=1.5))
        started = time.monotonic()
        report = deliverer.deliver_due(store.outbox)
        elapsed = time.monotonic() - started
    assert report.failed == 1 and elapsed < 3.0
    assert "timed out" in row(store, alert_id)["last_error"]
    assert row(store, alert_id)["status"] == "pending"
