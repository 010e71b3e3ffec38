"""The whole pipeline, as a user runs it: ``newsmon once`` against real local servers.

A feed on 127.0.0.1 links to a page carrying the seed article; alerts for all
three topics reach a webhook receiver (apprise ``json://``) and a real SMTP
server (aiosmtpd, apprise ``mailto://``). A second run sends nothing new.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.configs import ConfigFactory
from tests.helpers.seed import TITLE, TOPICS, serve_seed
from tests.helpers.servers import Mailbox, Site
from tests.helpers.service import newsmon

seed_site = pytest.fixture(name="seed_site")(serve_seed)

# As a user runs it: analysis in a worker process, not in the test's own.
AS_A_USER: dict[str, Any] = {"interval": "5m", "analysis": {"workers": 1}}


@pytest.mark.timeout(300)
def test_once_alerts_all_three_topics_by_webhook_and_email(
    tmp_path: Path, make_config: ConfigFactory, seed_site: Site, receiver: Site, mailbox: Mailbox
) -> None:
    channels = [{"name": "hook", "url": "${HOOK_URL}"}, {"name": "mail", "url": "${MAIL_URL}"}]
    config = make_config.write(feeds=[seed_site.url("/feed.xml")], channels=channels, **AS_A_USER)
    env = {
        "HOOK_URL": f"json://127.0.0.1:{receiver.port}/hook",
        "MAIL_URL": (f"mailto://127.0.0.1:{mailbox.port}?from=newsmon@example.org"
                     f"&to=desk@example.org&smtp=127.0.0.1"),
    }
    first = newsmon("--config", str(config), "once", env=env, timeout=180)
    assert first.returncode == 0, first.stderr
    posts = [r for r in receiver.requests if r.method == "POST"]
    assert len(posts) == 3
    bodies = [p.json() for p in posts]
    for topic in TOPICS:
        hits = [b for b in bodies if b["title"].startswith(f"[{topic}]")]
        assert len(hits) == 1, (topic, [b["title"] for b in bodies])
        assert TITLE in hits[0]["title"]
        assert seed_site.url("/article/seed") in hits[0]["message"]
    assert len(mailbox.messages) == 3
    subjects = [str(m["subject"]) for m in mailbox.messages]
    for topic in TOPICS:
        assert any(s.startswith(f"[{topic}]") and TITLE in s for s in subjects), subjects
    for message in mailbox.messages:
        text = message.get_body(preferencelist=("plain", "html")).get_content()
        assert seed_site.url("/article/seed") in text
    # The page was fetched once, with the tracking parameter as published.
    assert sum(r.path.startswith("/article/seed") for r in seed_site.requests) == 1

    second = newsmon("--config", str(config), "once", env=env, timeout=180)
    assert second.returncode == 0, second.stderr
    assert len([r for r in receiver.requests if r.method == "POST"]) == 3
    assert len(mailbox.messages) == 3

    db = sqlite3.connect(tmp_path / "state" / "test.db")
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
    assert {r[0] for r in db.execute("SELECT topic FROM matches")} == TOPICS
    assert db.execute("SELECT COUNT(*) FROM alerts WHERE status = 'sent'").fetchone()[0] == 6
    assert db.execute("SELECT text_source FROM articles").fetchone()[0] == "page"
    # No secret reaches the database.
    dump = "\n".join(db.iterdump())
    assert env["HOOK_URL"] not in dump and f"127.0.0.1:{mailbox.port}" not in dump


@pytest.mark.timeout(300)
def test_without_channels_alerts_are_stored_and_logged(
        tmp_path: Path, make_config: ConfigFactory, seed_site: Site) -> None:
    config = make_config.write(feeds=[seed_site.url("/feed.xml")], **AS_A_USER)
    result = newsmon("--config", str(config), "once", timeout=180)
    assert result.returncode == 0, result.stderr
    for topic in TOPICS:
        assert f"ALERT a1-{topic}-log" in result.stderr
    db = sqlite3.connect(tmp_path / "state" / "test.db")
    rows = db.execute("SELECT channel, status FROM alerts").fetchall()
    assert sorted(rows) == [("log", "sent")] * 3


@pytest.mark.timeout(300)
def test_a_failing_feed_does_not_stop_the_others(
        tmp_path: Path, make_config: ConfigFactory, seed_site: Site) -> None:
    seed_site.routes["/broken.xml"] = (500, {"Content-Type": "text/plain"}, b"oops")
    seed_site.routes["/login.xml"] = (200, {"Content-Type": "text/html"},
                                      b"<html><body>Please log in</body></html>")
    config = make_config.write(feeds=[seed_site.url("/broken.xml"), seed_site.url("/login.xml"),
                                      seed_site.url("/feed.xml")], **AS_A_USER)
    result = newsmon("--config", str(config), "once", timeout=180)
    assert result.returncode == 1  # something failed, and the exit code says so
    assert "broken.xml: http_status" in result.stderr
    assert "login.xml: not_a_feed" in result.stderr
    db = sqlite3.connect(tmp_path / "state" / "test.db")
    assert {r[0] for r in db.execute("SELECT topic FROM matches")} == TOPICS
    failures = dict(db.execute(
        "SELECT url, last_error_kind FROM feeds WHERE consecutive_failures > 0").fetchall())
    assert failures == {seed_site.url("/broken.xml"): "http_status",
                        seed_site.url("/login.xml"): "not_a_feed"}
