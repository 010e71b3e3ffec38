"""``newsmon poller`` / ``worker`` / ``deliver`` and the cluster in ``newsmon status``:
exit codes scripts can trust, help that teaches, a clean stop that hands the feeds back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli.app import cli
from monitor.storage.leases import ClusterStore, connect_cluster
from tests.helpers.configs import ConfigFactory
from tests.helpers.paths import REPO
from tests.helpers.postgres import PostgresServer
from tests.helpers.servers import Site, rss

COMMANDS = ("poller", "worker", "deliver")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_teaches_with_examples_and_exit_codes(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"newsmon {command}" in result.output
    assert "Exit codes:" in result.output and "postgresql://" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_on_a_sqlite_database_they_refuse_with_exit_2_and_say_why(
        command: str, make_config: ConfigFactory) -> None:
    config = make_config.write(feeds=["http://127.0.0.1:9/feed.xml"])
    result = CliRunner().invoke(cli, [command, "--config", str(config)])
    assert result.exit_code == 2
    assert "PostgreSQL" in result.output and "newsmon run" in result.output


@pytest.mark.postgres
def test_a_poller_stops_cleanly_on_sigterm_and_hands_its_feeds_back(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database("cli")
    items = [{"title": "Quiet day", "link": "http://news.test/1", "guid": "1",
              "description": "nothing"}]
    with Site(routes={"/feed.xml": (200, {"Content-Type": "application/rss+xml"},
                                    rss(items))}) as site:
        config = ConfigFactory(tmp_path).write(database=url, feeds=[site.url("/feed.xml")],
                                               fetch={"timeout": "2s"})
        log = tmp_path / "poller.log"
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config),
                                 "poller", "--lease", "6"], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=log.open("wb"), env={**os.environ})
        try:
            deadline = time.monotonic() + 30
            while b"poll " not in log.read_bytes():  # it started and polled its feed
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            store = ClusterStore(connect_cluster(url))
            try:
                assert [lease.holder is not None for lease in store.leases()] == [True]
                assert [row.kind for row in store.processes(within=60)] == ["poller"]
                status = CliRunner().invoke(cli, ["status", "--json", "--config", str(config)])
                report = json.loads(status.output)
                assert [(p["kind"], p["feeds"]) for p in report["processes"]] == [("poller", 1)]
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=20) == 0, log.read_text()
                assert [lease.holder for lease in store.leases()] == [None]  # free at once
                assert store.processes(within=60) == []  # marked stopped
            finally:
                store.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
