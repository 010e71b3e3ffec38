"""Secrets in channel URLs never reach logs (even at DEBUG), errors, output or the DB.

Spec E36 (apprise logs a mistyped URL unmasked at ERROR) and F42 (apprise's
Slack plugin logs the full webhook at DEBUG), run as a user runs newsmon.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from monitor.storage import open_storage
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert
from tests.helpers.paths import REPO
from tests.helpers.servers import Site


def newsmon(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--log-level", "debug", "--config", str(config), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def test_mistyped_apprise_urls_are_refused_with_masked_errors(make_config: ConfigFactory) -> None:
    env = {"SLACK_URL": "slack://TBADSECRET/BBADSECRET/C!!bad$$SECRET",
           "TYPO_URL": "slak://TTYPOSECRET/BTYPOSECRET/CTYPOSECRET"}
    config = make_config.write(database="state.db", delivery={"timeout": "3s"}, channels=[
        {"name": "slack", "url": "${SLACK_URL}"}, {"name": "typo", "url": "${TYPO_URL}"}])
    for command in (("check",), ("run",), ("alerts", "test", "slack")):
        result = newsmon(config, *command, env=env)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        output = result.stdout + result.stderr
        assert "SECRET" not in output, (command, output)
        if command != ("alerts", "test", "slack"):
            assert "channel slack: apprise cannot use the URL slack://****" in output
            assert "channel typo: apprise cannot use the URL slak://****" in output


def test_a_failing_channel_at_debug_level_leaks_nothing(tmp_path: Path, make_config: ConfigFactory) -> None:
    secret = "TOPSECRETPW42"
    with Site(routes={"/down": (500, {"Content-Type": "text/plain"}, b"no")}) as site:
        env = {"HOOK_URL": f"json://user:{secret}@127.0.0.1:{site.port}/down"}
        config = make_config.write(database="state.db", delivery={"timeout": "3s"},
                                   channels=[{"name": "hook", "url": "${HOOK_URL}"}])
        store = open_storage(tmp_path / "state.db")
        add_alert(store, "hook")
        store.close()
        once = newsmon(config, "once", env=env)
        assert once.returncode == 1, once.stderr[-2000:]
        assert "hook: HTTP 500" in once.stdout + once.stderr
        test = newsmon(config, "alerts", "test", "hook", env=env)
        assert test.returncode == 1 and "HTTP 500" in test.stderr
        listing = newsmon(config, "alerts", env=env)
        check = newsmon(config, "check", env=env)
        assert site.requests, "the channel was really tried"
    for result in (once, test, listing, check):
        assert secret not in result.stdout + result.stderr
        assert str(site.port) not in result.stdout + result.stderr
    assert "DEBUG" in once.stderr  # debug logging was really on
    db = sqlite3.connect(tmp_path / "state.db")
    dump = "\n".join(db.iterdump())
    assert secret not in dump and f"127.0.0.1:{site.port}" not in dump
    # The cause as itself: the status and an excerpt of the service's answer.
    assert db.execute("SELECT last_error FROM alerts").fetchone()[0] == "HTTP 500: no"
