"""``database: postgresql://…`` end to end: ``newsmon once`` on a real loopback feed sends the
same alerts as with SQLite to a loopback webhook, a second run sends nothing new, and the
database password (from the environment) shows in no output.

Switching backends is the URL alone: the config, the feed, the rules and the channel are
the same for both runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.storage import open_readonly
from tests.helpers.configs import ConfigFactory
from tests.helpers.postgres import PostgresServer
from tests.helpers.seed import TITLE, TOPICS, serve_seed
from tests.helpers.servers import Site
from tests.helpers.service import newsmon

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

seed_site = pytest.fixture(name="seed_site")(serve_seed)

PASSWORD = "e2e-Pg-passw0rd-never-shown"


def alerts_sent(receiver: Site, since: int) -> list[str]:
    """The titles the webhook received after the first ``since`` requests, sorted."""
    return sorted(r.json()["title"] for r in receiver.requests[since:] if r.method == "POST")


@pytest.mark.timeout(600)
def test_once_on_postgresql_alerts_as_on_sqlite(tmp_path: Path, make_config: ConfigFactory,
                                               seed_site: Site, receiver: Site,
                                               postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()
    env = {"HOOK_URL": f"json://127.0.0.1:{receiver.port}/hook",
           "NEWSMON_DATABASE_PASSWORD": PASSWORD}
    common: dict[str, Any] = {"feeds": [seed_site.url("/feed.xml")], "interval": "5m",
                              "channels": [{"name": "hook", "url": "${HOOK_URL}"}],
                              "analysis": {"workers": 1}}
    sqlite_config = make_config.write(name="sqlite.yaml", database="state/lite.db", **common)
    pg_config = make_config.write(name="pg.yaml", database=url, **common)

    lite = newsmon("--config", str(sqlite_config), "once", env=env, timeout=240)
    assert lite.returncode == 0, lite.stderr
    on_sqlite = alerts_sent(receiver, 0)
    assert len(on_sqlite) == 3 and all(TITLE in t for t in on_sqlite)

    seen = len(receiver.requests)
    first = newsmon("--config", str(pg_config), "once", env=env, timeout=240)
    assert first.returncode == 0, first.stderr
    assert alerts_sent(receiver, seen) == on_sqlite  # the same alerts, the same words
    seen = len(receiver.requests)
    again = newsmon("--config", str(pg_config), "once", env=env, timeout=240)
    assert again.returncode == 0, again.stderr
    assert alerts_sent(receiver, seen) == []  # a known item alerts once

    store = open_readonly(url)
    try:
        assert store.dialect == "postgresql"
        assert store.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
        assert {r[0] for r in store.db.execute("SELECT topic FROM matches")} == TOPICS
        assert store.outbox.counts() == {"sent": 3}
        dump = "\n".join(str(r) for r in store.db.execute(
            "SELECT alert_key, channel, title, url, source, last_error FROM alerts").fetchall())
        assert env["HOOK_URL"] not in dump and PASSWORD not in dump  # no secret is stored
    finally:
        store.close()

    status = newsmon("--config", str(pg_config), "status", env=env, timeout=240)
    assert url in status.stdout, status.stdout + status.stderr  # names the database (no password)
    for run in (first, again, status):
        assert PASSWORD not in run.stdout + run.stderr
