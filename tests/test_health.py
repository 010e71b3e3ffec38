"""Health: ``newsmon status`` exit codes, ``/healthz`` and ``/metrics`` over real
loopback HTTP, and ``newsmon db backup``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.records import iso, utcnow
from monitor.runtime.daemon import Daemon
from monitor.runtime.metrics import Metrics
from monitor.runtime.status import evaluate
from monitor.runtime.systemd import Notifier
from monitor.storage import open_readonly, open_storage
from tests.helpers.paths import SEED
from tests.helpers.servers import Site, article_html, rss
from tests.helpers.service import newsmon, wait_for, write_config

FEEDS = ["http://127.0.0.1:9/a.xml", "http://127.0.0.1:9/b.xml"]


def _db(config: Path, *, cycle_age: float | None = 5, failing: int = 0, dead: int = 0) -> Path:
    """A database in the state a daemon would leave: feeds, a cycle, maybe failures."""
    cfg = load_config(config)
    store = open_storage(cfg.database_path())
    store.feeds.sync((f.url, f.name, f.tags) for f in cfg.feeds)
    if cycle_age is not None:
        cycle = store.ops.record_cycle(utcnow(), feeds_ok=2, feeds_failed=0, items_new=3, matches=1,
                                   alerts=1)
        store.db.execute("UPDATE cycles SET finished_at = ? WHERE id = ?",
                         (iso(utcnow() - timedelta(seconds=cycle_age)), cycle))
    for url in FEEDS[:failing]:
        store.feeds.record_poll_failure(store.feeds.get(url).id, kind="http_status",
                                        message="HTTP 500")
    for n in range(dead):
        store.outbox.enqueue_notice(f"k{n}", "t", "b", ["hook"])
        store.db.execute("UPDATE alerts SET status = 'dead'")
    path = store.path
    store.close()
    return path


def test_status_exit_codes(tmp_path: Path) -> None:
    config = write_config(tmp_path, FEEDS, interval="10m")
    missing = newsmon("--config", str(config), "status")
    assert missing.returncode == 1 and "no database" in missing.stderr

    _db(config)
    healthy = newsmon("--config", str(config), "status")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith("newsmon: healthy")
    assert "feeds: 2 enabled, 0 failing" in healthy.stdout

    as_json = newsmon("--config", str(config), "status", "--json")
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    assert report["healthy"] is True and report["feeds"] == 2
    assert report["last_cycle"]["items_new"] == 3 and report["database_bytes"] > 0

    broken = tmp_path / "broken.yaml"
    broken.write_text("feeds: 3\n", encoding="utf-8")
    assert newsmon("--config", str(broken), "status").returncode == 2


def test_unhealthy_states(tmp_path: Path) -> None:
    config = write_config(tmp_path, FEEDS, interval="10m")
    cfg = load_config(config)
    cases = {
        "stale": dict(cycle_age=3 * 600 + 60),
        "never": dict(cycle_age=None),
        "dead": dict(dead=1),
        "all failing": dict(failing=2),
    }
    for name, state in cases.items():
        db = _db(config, **state)
        store = open_readonly(db)
        report = evaluate(store.views.status_figures(), cfg)
        store.close()
        assert not report.healthy, name
        text = " ".join(report.problems)
        expected = {"stale": "stale", "never": "no poll cycle has finished",
                    "dead": "dead alert", "all failing": "all 2 feeds are failing"}[name]
        assert expected in text, (name, report.problems)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    # One feed failing out of two is reported, not unhealthy.
    store = open_readonly(_db(config, failing=1))
    report = evaluate(store.views.status_figures(), cfg)
    store.close()
    assert report.healthy and len(report.failing_feeds) == 1
    partly = newsmon("--config", str(config), "status")
    assert partly.returncode == 0 and "failing: " in partly.stdout


def test_each_daemon_has_its_own_metrics_registry() -> None:
    first, second = Metrics(), Metrics()  # no "duplicated timeseries": nothing global
    first.polls.labels(result="ok").inc()
    assert b'newsmon_polls_total{result="ok"} 1.0' in first.render()
    assert b'newsmon_polls_total{result="ok"}' not in second.render()


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


@pytest.mark.timeout(90)
def test_healthz_and_metrics_over_http_then_a_backup(tmp_path: Path) -> None:
    title = "Kremlin says there are no grounds for negotiations yet"
    with Site() as site:
        site.routes["/article"] = (200, {"Content-Type": "text/html; charset=utf-8"},
                                   article_html(title, SEED.read_text(encoding="utf-8").split("\n")))
        site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, rss([{
            "title": title, "link": site.url("/article"), "guid": "seed-1",
            "description": "Russia says peace talks remain off the table."}]))
        site.routes["/broken.xml"] = (500, {"Content-Type": "text/plain"}, b"oops")
        config = write_config(tmp_path, [site.url("/feed.xml"), site.url("/broken.xml")],
                              interval="10m",
                              service={"http": {"enabled": True, "host": "127.0.0.1", "port": 0}})

        async def scenario() -> None:
            daemon = Daemon(load_config(config), notifier=Notifier(None))
            await daemon.start()
            try:
                assert daemon.http is not None and daemon.http.port
                base = f"http://127.0.0.1:{daemon.http.port}"
                await asyncio.to_thread(
                    wait_for, lambda: daemon.metrics.polls.labels(result="failed")._value.get() >= 1
                    and daemon.metrics.polls.labels(result="ok")._value.get() >= 1, 30, "polls")
                status, body, ctype = await asyncio.to_thread(_get, base + "/healthz")
                assert status == 200 and ctype.startswith("application/json")
                health = json.loads(body)
                assert health["healthy"] is True and health["feeds"] == 2
                assert [f["kind"] for f in health["failing_feeds"]] == ["http_status"]
                status, body, ctype = await asyncio.to_thread(_get, base + "/metrics")
                assert status == 200 and ctype.startswith("text/plain")
                text = body.decode()
                assert 'newsmon_polls_total{result="ok"} 1.0' in text
                assert 'newsmon_poll_errors_total{kind="http_status"} 1.0' in text
                assert "newsmon_articles_processed_total 1.0" in text
                assert 'newsmon_matches_total{topic="negotiation"} 1.0' in text
                assert 'newsmon_stage_seconds_count{stage="extract"} 1.0' in text
                assert 'newsmon_stage_seconds_count{stage="poll"} 2.0' in text
                assert 'newsmon_alerts{state="pending"}' in text
                # A dead alert makes /healthz answer 503.
                daemon.runtime.storage.db.execute(
                    "UPDATE alerts SET status = 'dead' WHERE id = (SELECT MIN(id) FROM alerts)")
                status, body, _ = await asyncio.to_thread(_get, base + "/healthz")
                assert status == 503 and "dead alert" in " ".join(json.loads(body)["problems"])
            finally:
                await daemon.stop()

        asyncio.run(scenario())

    backup = tmp_path / "backup.db"
    result = newsmon("--config", str(config), "db", "backup", str(backup))
    assert result.returncode == 0, result.stderr
    copy = sqlite3.connect(backup)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
    assert {r[0] for r in copy.execute("SELECT topic FROM matches")} >= {"negotiation"}
    original = sqlite3.connect(tmp_path / "state" / "test.db")
    assert (copy.execute("SELECT COUNT(*) FROM alerts").fetchone()
            == original.execute("SELECT COUNT(*) FROM alerts").fetchone())
    again = newsmon("--config", str(config), "db", "backup", str(backup))
    assert again.returncode == 1 and "exists" in again.stderr
