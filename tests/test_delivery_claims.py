"""Delivery that is exactly right under concurrency, shutdown and failure (issue 10).

Real servers on loopback: a webhook receiver (``Site``), an SMTP server
(aiosmtpd ``Mailbox``, one that answers slowly), and ``newsmon`` processes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import ChannelConfig, DeliverySettings
from monitor.delivery.deliverer import Deliverer
from monitor.errors import StorageError
from monitor.records import utcnow
from monitor.storage import Storage, open_storage
from tests.helpers.configs import ConfigFactory, line_of
from tests.helpers.delivery import add_alert
from tests.helpers.loopback import HOST, free_port
from tests.helpers.paths import REPO
from tests.helpers.servers import Mailbox, Site
from tests.helpers.service import DaemonProcess, newsmon, wait_for
from tests.helpers.storage import BACKENDS, new_target

OK = (200, {"Content-Type": "application/json"}, b"{}")


def settings(**overrides: Any) -> DeliverySettings:
    return DeliverySettings(**{"timeout": 5, "retry_base": 0.2, "retry_max": 1, **overrides})


def hook(port: int, name: str = "hook", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": f"json://127.0.0.1:{port}/hook", "rate_limit": 0, **extra}


def received_keys(site: Site) -> list[str]:
    import re
    keys: list[str] = []
    for request in site.requests:
        if request.method == "POST":
            keys.extend(re.findall(r"a\d+-[a-z]+-hook", request.json()["message"]))
    return keys


# --- claims, in one process -----------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def claims_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The claim tests run on SQLite and on PostgreSQL: a fresh database's path or URL."""
    return new_target(request.param, tmp_path, request)


def test_a_claimed_channel_is_skipped_by_another_run(claims_db: Path | str, receiver: Site) -> None:
    receiver.routes["/hook"] = OK
    store = open_storage(claims_db)
    add_alert(store, "hook")
    first = Deliverer([ChannelConfig(**hook(receiver.port))], settings())
    second = Deliverer([ChannelConfig(**hook(receiver.port))], settings())
    claimed = store.outbox.claim_due("hook", first.owner, lease_until=utcnow() + timedelta(60))
    assert claimed is not None and len(claimed) == 1
    report = second.deliver_due(store.outbox)
    assert report.messages == 0 and report.skipped_channels == 1  # the live claim holds
    store.outbox.release_claims(first.owner)
    assert second.deliver_due(store.outbox).sent == 1
    assert first.deliver_due(store.outbox).messages == 0
    assert len(receiver.requests) == 1
    store.close()


def test_a_dead_owners_claim_is_taken_over_and_the_resend_is_logged(
        claims_db: Path | str, receiver: Site, caplog: pytest.LogCaptureFixture) -> None:
    receiver.routes["/hook"] = OK
    store = open_storage(claims_db)
    alert_id = add_alert(store, "hook")
    dead = f"{socket.gethostname()}:999999:dead"  # no such pid: that process is gone
    store.outbox.claim_due("hook", dead, lease_until=utcnow() + timedelta(hours=1))
    assert store.outbox.begin_send([alert_id], dead, lease_until=utcnow() + timedelta(hours=1))
    deliverer = Deliverer([ChannelConfig(**hook(receiver.port))], settings())
    caplog.set_level("WARNING")
    report = deliverer.deliver_due(store.outbox)
    assert report.sent == 1 and report.resent == 1
    assert "pid 999999 stopped while sending it" in caplog.text
    assert "may arrive twice" in caplog.text
    store.close()


def test_an_expired_claim_of_another_host_is_retried(claims_db: Path | str, receiver: Site) -> None:
    receiver.routes["/hook"] = OK
    store = open_storage(claims_db)
    add_alert(store, "hook")
    other = "elsewhere:1:x"
    store.outbox.claim_due("hook", other, lease_until=utcnow() + timedelta(seconds=1))
    deliverer = Deliverer([ChannelConfig(**hook(receiver.port))], settings())
    assert deliverer.deliver_due(store.outbox).messages == 0  # its lease still holds
    time.sleep(2.1)
    assert deliverer.deliver_due(store.outbox).sent == 1
    store.close()


class FlakyMarks:
    """An outbox whose mark_delivered fails (disk full) until ``healed``."""

    def __init__(self, outbox: Any) -> None:
        self._outbox = outbox
        self.healed = False

    def mark_delivered(self, *args: Any, **kwargs: Any) -> int:
        if not self.healed:
            raise StorageError("marking alerts sent on hook: database or disk is full")
        return int(self._outbox.mark_delivered(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._outbox, name)


def test_a_send_that_cannot_be_marked_is_retried_as_a_mark_not_a_send(
        claims_db: Path | str, receiver: Site) -> None:
    """Issue 16 item 5: a full disk must not resend an alert every run."""
    receiver.routes["/hook"] = OK
    store = open_storage(claims_db)
    add_alert(store, "hook")
    outbox = FlakyMarks(store.outbox)
    deliverer = Deliverer([ChannelConfig(**hook(receiver.port))], settings())
    for _ in range(3):
        deliverer.deliver_due(outbox)  # type: ignore[arg-type]
    assert len(receiver.requests) == 1 and deliverer.unmarked == 1
    assert store.outbox.counts() == {"pending": 1}
    outbox.healed = True
    report = deliverer.deliver_due(outbox)  # type: ignore[arg-type]
    assert report.sent == 1 and report.messages == 0
    assert store.outbox.counts() == {"sent": 1} and len(receiver.requests) == 1
    store.close()


def test_the_stop_flag_is_checked_between_messages(claims_db: Path | str, receiver: Site) -> None:
    receiver.routes["/hook"] = OK
    store = open_storage(claims_db)
    for _ in range(4):
        add_alert(store, "hook")
    deliverer = Deliverer([ChannelConfig(**hook(receiver.port))], settings())
    # A stop requested while the first message is being sent: no second one.
    report = deliverer.deliver_due(store.outbox, should_stop=lambda: len(receiver.requests) >= 1)
    assert report.stopped and report.messages == 1
    assert store.outbox.counts() == {"sent": 1, "pending": 3}
    assert store.db.execute("SELECT COUNT(*) FROM alerts WHERE claimed_by IS NOT NULL"
                            ).fetchone()[0] == 0  # unsent claims were given back
    store.close()


# --- timeouts and causes ----------------------------------------------------------------


def test_delivery_timeout_reaches_apprises_read_timeout(tmp_path: Path) -> None:
    """Issue 16 item 4: a webhook answering after 6 s is sent and marked (not cut at 4 s)."""
    def slow(_: object) -> tuple[int, dict[str, str], bytes]:
        time.sleep(6)
        return OK

    with Site(routes={"/hook": slow}) as site:
        store = open_storage(tmp_path / "t.db")
        add_alert(store, "hook")
        deliverer = Deliverer([ChannelConfig(**hook(site.port))], settings(timeout=10))
        service = deliverer.targets["hook"].notifier[0]  # type: ignore[index]
        assert service.socket_read_timeout == 10 and service.socket_connect_timeout == 10
        report = deliverer.deliver_due(store.outbox)
        assert report.sent == 1, report.errors
        assert len(site.requests) == 1
        store.close()


def _cause(tmp_path: Path, url: str, **extra: Any) -> str:
    store = open_storage(tmp_path / f"{abs(hash(url))}.db")
    try:
        add_alert(store, "c")
        deliverer = Deliverer([ChannelConfig(name="c", url=url, rate_limit=0, **extra)],
                              settings(timeout=4))
        report = deliverer.deliver_due(store.outbox)
        assert report.failed == 1, report
        row = store.db.execute("SELECT last_error FROM alerts").fetchone()
        return str(row[0])
    finally:
        store.close()


class RefusingSmtp(Mailbox):
    """Rejects every message with a 550 reply."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "550 5.7.1 Relaying denied for this sender"


def test_each_failure_cause_is_shown_as_itself(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    assert "connection refused" in _cause(tmp_path, f"json://127.0.0.1:{closed}/hook")
    assert "connection refused" in _cause(
        tmp_path, f"mailto://user:pw@127.0.0.1:{closed}?to=a@example.org&from=n@example.org&mode=insecure")
    assert "DNS lookup failed" in _cause(tmp_path, "json://no-such-host.invalid/hook")
    with Site(routes={"/hook": (403, {"Content-Type": "application/json"},
                                b'{"error": "invalid token"}')}) as site:
        cause = _cause(tmp_path, f"json://127.0.0.1:{site.port}/hook")
        assert cause.startswith("authentication refused: HTTP 403") and "invalid token" in cause
    with Site(routes={"/hook": (500, {}, b"upstream broke")}) as site:
        assert _cause(tmp_path, f"json://127.0.0.1:{site.port}/hook") == "HTTP 500: upstream broke"
    # SMTP: a server without AUTH, given a password; and a 550 reply.
    with Mailbox() as mailbox:
        cause = _cause(tmp_path, f"mailto://user:Sekr1tPass@{HOST}:{mailbox.port}"
                                 "?to=a@example.org&from=n@example.org&mode=insecure")
        assert "offers no AUTH" in cause and "Sekr1tPass" not in cause
    with RefusingSmtp() as mailbox:
        cause = _cause(tmp_path, f"mailto://{HOST}:{mailbox.port}"
                                 "?to=a@example.org&from=n@example.org&mode=insecure")
        assert "SMTP 550" in cause and "Relaying denied" in cause
    # TLS spoken to a plain HTTP server.
    with Site(routes={"/hook": OK}) as site:
        assert "TLS error" in _cause(tmp_path, f"jsons://127.0.0.1:{site.port}/hook")
    # A read timeout: the service accepts the connection and never answers.
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(5)
    try:
        cause = _cause(tmp_path, f"json://127.0.0.1:{listener.getsockname()[1]}/hook")
        assert "timed out" in cause
    finally:
        listener.close()


# --- routing --------------------------------------------------------------------------------


TOPIC_RULES = """\
topics:
  - id: energy
    name: Energy
    channels: [energy-desk]
    terms: [pipeline]
  - id: ceasefire
    name: Ceasefire
    terms: [ceasefire]
"""


def test_check_refuses_an_unknown_channel_and_a_topic_typo(tmp_path: Path,
                                                           make_config: ConfigFactory) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TOPIC_RULES, encoding="utf-8")
    config = make_config.write(rules=[rules], channels=[
        {"name": "newsroom", "url": "json://127.0.0.1:9/hook", "topics": ["ceasfire"]},
        {"name": "energy", "url": "json://127.0.0.1:9/hook2"}])
    result = newsmon("--config", str(config), "check")
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr
    assert f"{rules}:{line_of(rules, 'id: energy')}" in err
    assert "routes to channel energy-desk, which is not configured (did you mean energy?)" in err
    assert f"{config}:{line_of(config, 'ceasfire')}" in err
    assert "lists topic ceasfire, which no rule file defines (did you mean ceasefire?)" in err
    # Start-up refuses the same config (exit 2), before it touches the database.
    run = newsmon("--config", str(config), "run", timeout=60)
    assert run.returncode == 2 and "energy-desk" in run.stdout + run.stderr


# --- processes on one database ------------------------------------------------------------


def daemon_config(folder: Path, port: int, **delivery: Any) -> Path:
    return ConfigFactory(folder).write(
        database="outbox.db", channels=[hook(port)],
        delivery={"interval": "0.3s", "timeout": "3s", "retry_base": "0.2s", "retry_max": "1s",
                  "collapse_over": 100, **delivery},
        service={"stop_timeout": "3s"})


def test_a_second_run_refuses_naming_the_holder(tmp_path: Path, receiver: Site) -> None:
    receiver.routes["/hook"] = OK
    config = daemon_config(tmp_path, receiver.port)
    first = DaemonProcess(config)
    try:
        first.wait_log("newsmon running")
        second = newsmon("--config", str(config), "run", timeout=60)
        assert second.returncode == 1, second.stderr
        text = second.stdout + second.stderr
        assert f"pid {first.proc.pid}" in text and "since 20" in text
        assert "--delivery-only" in text
        lock = json.loads(Path(f"{tmp_path / 'outbox.db'}.lock").read_text())
        assert lock["pid"] == str(first.proc.pid)
        # A delivery-only helper may run beside it (no lock; it shares the claims).
        helper_log = tmp_path / "helper.log"
        with helper_log.open("wb") as out:
            helper = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config), "run",
                 "--delivery-only"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_for(lambda: b"newsmon running" in helper_log.read_bytes()
                         or helper.poll() is not None, 30, "the helper to start")
                assert helper.poll() is None, helper_log.read_text()
            finally:
                helper.send_signal(signal.SIGTERM)
                helper.wait(20)
        text = helper_log.read_text()
        assert "delivery-only helper" in text and helper.returncode == 0, text
    finally:
        first.signal(signal.SIGTERM)
        first.proc.wait(20)
        first.stop()


def test_run_and_once_together_send_every_alert_exactly_once(tmp_path: Path) -> None:
    def slowish(_: object) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.05)
        return OK

    with Site(routes={"/hook": slowish}) as site:
        config = daemon_config(tmp_path, site.port)
        store = open_storage(tmp_path / "outbox.db")
        daemon = DaemonProcess(config)
        try:
            daemon.wait_log("newsmon running")
            for _round in range(4):
                for _ in range(8):
                    add_alert(store, "hook")
                onces = [threading.Thread(target=newsmon, args=("--config", str(config), "once"))
                         for _ in range(2)]
                for thread in onces:
                    thread.start()
                for thread in onces:
                    thread.join()
            wait_for(lambda: store.outbox.counts().get("pending", 0) == 0, 30, "a drained outbox")
        finally:
            daemon.signal(signal.SIGTERM)
            daemon.proc.wait(20)
            daemon.stop()
        keys = received_keys(site)
        counts = Counter(keys)
        assert len(counts) == 32, counts
        assert [k for k, n in counts.items() if n > 1] == []  # exactly once
        store.close()


class SlowMailbox(Mailbox):
    """An SMTP server that takes ``delay`` seconds to accept each message."""

    delay = 1.5

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.timeout(120)
def test_sigterm_in_a_slow_email_batch(tmp_path: Path) -> None:
    with SlowMailbox() as mailbox:
        url = f"mailto://{HOST}:{mailbox.port}?to=desk@example.org&from=n@example.org&mode=insecure"
        config = ConfigFactory(tmp_path).write(
            database="outbox.db", channels=[{"name": "mail", "url": url, "rate_limit": 0}],
            delivery={"interval": "1s", "timeout": "10s", "collapse_over": 100},
            service={"stop_timeout": "3s"})
        store = open_storage(tmp_path / "outbox.db")
        for _ in range(8):
            add_alert(store, "mail")
        daemon = DaemonProcess(config)
        try:
            daemon.wait_log("newsmon running")
            wait_for(lambda: len(mailbox.messages) >= 2, 30, "two emails")
            signalled = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(20)
            took = time.monotonic() - signalled
        finally:
            daemon.stop()
        log = daemon.log()
        assert code == 0, log
        print(f"exit {took:.2f}s after SIGTERM (stop_timeout 3s)")
        assert took <= 3.0 + 0.6, f"exit {took:.1f}s after SIGTERM (stop_timeout 3s)"
        assert "Traceback" not in log and "CancelledError" not in log, log
        after = log.split("stopped")[-1]
        assert " sent to mail" not in after and "Sent Email" not in after, log
        sent_before = store.outbox.counts().get("sent", 0)
        received_before = len(mailbox.messages)
        time.sleep(SlowMailbox.delay + 0.5)  # a send cut at the deadline may land now
        assert len(mailbox.messages) - sent_before <= 1
        # Restart: the rest goes out; at most the one in flight arrives twice.
        again = DaemonProcess(config)
        try:
            wait_for(lambda: store.outbox.counts().get("pending", 0) == 0, 60, "the rest sent")
        finally:
            again.signal(signal.SIGTERM)
            again.proc.wait(20)
            again.stop()
        subjects = Counter(str(m["Subject"]) for m in mailbox.messages)
        assert sum(subjects.values()) - len(subjects) <= 1, (subjects, received_before)
        assert store.outbox.counts() == {"sent": 8}
        store.close()


# --- channel health ------------------------------------------------------------------------


def test_a_channel_down_longer_than_the_window_makes_status_unhealthy(tmp_path: Path) -> None:
    """status exits 1 naming the channel and its cause, then recovers."""
    port = free_port()
    config = ConfigFactory(tmp_path).write(
        database="outbox.db", channels=[hook(port, name="slack"),
                                        {"name": "ops", "url": "json://127.0.0.1:9/x",
                                         "admin": True, "rate_limit": 0}],
        delivery={"channel_failing_after": "10s", "retry_base": "0.1s", "retry_max": "0.2s",
                  "timeout": "2s"})
    store = open_storage(tmp_path / "outbox.db")
    store.ops.record_cycle(utcnow(), feeds_ok=0, feeds_failed=0, items_new=0, matches=0,
                           alerts=0)  # no feeds: only the channel can make it unhealthy
    add_alert(store, "slack")
    from monitor.config import load_config

    loaded = load_config(config)
    deliverer = Deliverer(loaded.channels, loaded.delivery)
    deliverer.deliver_due(store.outbox)
    first_failure = time.monotonic()
    status = newsmon("--config", str(config), "status")
    assert status.returncode == 0, status.stdout  # failing, not yet for longer than the window
    assert "slack" in status.stdout and "failing" in status.stdout
    time.sleep(max(0.0, 10.5 - (time.monotonic() - first_failure)))
    deliverer.deliver_due(store.outbox)
    status = newsmon("--config", str(config), "status")
    assert status.returncode == 1, status.stdout
    assert "channel slack has failed every send since" in status.stdout
    assert "connection refused" in status.stdout
    as_json = json.loads(newsmon("--config", str(config), "status", "--json").stdout)
    (slack,) = [c for c in as_json["channels"] if c["channel"] == "slack"]
    assert slack["state"] == "down" and slack["pending"] == 1 and slack["consecutive_failures"] >= 2
    notices = store.db.execute("SELECT channel, title FROM alerts WHERE kind = 'notice'").fetchall()
    assert notices == [("ops", "Channel failing: slack")]  # once, to the other admin channel
    with Site(routes={"/hook": OK}) as site:
        channels = [ChannelConfig(**hook(site.port, name="slack")), loaded.channels[1]]
        time.sleep(0.3)
        Deliverer(channels, loaded.delivery).deliver_due(store.outbox)
        assert len(site.requests) == 1
    status = newsmon("--config", str(config), "status")
    assert status.returncode == 0, status.stdout
    titles = [r[0] for r in store.db.execute(
        "SELECT title FROM alerts WHERE kind = 'notice' ORDER BY id")]
    assert titles == ["Channel failing: slack", "Channel recovered: slack"]
    store.close()


def test_db_backup_leaves_no_partial_files(tmp_path: Path, make_config: ConfigFactory) -> None:
    config = make_config.write(database="state.db")
    store: Storage = open_storage(tmp_path / "state.db")
    add_alert(store, "hook")
    dest = tmp_path / "backups" / "copy.db"
    dest.parent.mkdir()
    result = newsmon("--config", str(config), "db", "backup", str(dest))
    store.close()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.db"]
    assert sqlite3.connect(dest).execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 1
