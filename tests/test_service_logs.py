"""Logs: one JSON object a line with the feed it concerns, secrets masked."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from monitor.logs import JsonFormatter, RedactingFilter, add_secrets, setup_logging
from tests.helpers.servers import Site, rss
from tests.helpers.service import newsmon, write_config


def test_json_lines_carry_the_feed_and_mask_secrets(tmp_path: Path) -> None:
    with Site() as site:
        site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                    rss([{"title": "Weather", "guid": "w1", "description": "Sun"}]))
        site.routes["/broken.xml"] = (500, {"Content-Type": "text/plain"}, b"oops")
        config = write_config(
            tmp_path, [site.url("/feed.xml"), site.url("/broken.xml")],
            channels=[{"name": "ops", "url": "${OPS_URL}", "admin": True}])
        result = newsmon("--log-format", "json", "--config", str(config), "once",
                         env={"OPS_URL": "json://127.0.0.1:9/hook-sEcReT-token"})
    assert result.returncode == 1  # the broken feed failed
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert entries and len(entries) == len([ln for ln in result.stderr.splitlines() if ln.strip()
                                            and not ln.startswith("  ")])
    polls = [e for e in entries if e["message"].startswith("poll ")]
    assert {e["feed"] for e in polls} == {site.url("/feed.xml"), site.url("/broken.xml")}
    failed = next(e for e in polls if e["feed"].endswith("/broken.xml"))
    assert failed["level"] == "warning" and "http_status" in failed["message"]
    assert "sEcReT" not in result.stderr


def test_extra_fields_are_redacted_too() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent to %s", ("hook",), None)
    record.alert = "a1-topic-hook"
    record.channel = "https://hooks.example.org/T0/very-secret"
    RedactingFilter(["very-secret"]).filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["alert"] == "a1-topic-hook"
    assert entry["channel"] == "https://hooks.example.org/T0/****"


def test_add_secrets_reaches_the_installed_filter(capsys) -> None:  # type: ignore[no-untyped-def]
    setup_logging("info", "text")
    add_secrets(["reloaded-secret-value"])
    logging.getLogger("t").warning("value reloaded-secret-value here")
    assert "reloaded-secret-value" not in capsys.readouterr().err
    logging.getLogger().handlers.clear()
