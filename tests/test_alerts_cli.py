"""``newsmon alerts``: list (TSV when piped), retry ID / --dead, test CHANNEL."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from monitor.cli.app import cli
from monitor.storage import Storage, open_storage
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert, row
from tests.helpers.servers import Site


def setup(tmp_path: Path, port: int) -> tuple[Path, Storage]:
    """A config with one webhook channel on ``port``, and its (open) database."""
    config = ConfigFactory(tmp_path).write(
        database="state.db", channels=[{"name": "hook", "url": f"json://127.0.0.1:{port}/hook"}])
    return config, open_storage(tmp_path / "state.db")


def test_list_is_tab_separated_when_piped(tmp_path: Path, receiver: Site) -> None:
    config, store = setup(tmp_path, receiver.port)
    first = add_alert(store, "hook", title="Tab\there")
    second = add_alert(store, "hook")
    store.db.execute("UPDATE alerts SET status = 'dead', last_error = 'HTTP 500' WHERE id = ?",
                     (first,))
    result = CliRunner().invoke(cli, ["alerts", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines[0].split("\t")
    assert header[:3] == ["id", "alert_key", "channel"]
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert [r["id"] for r in rows] == [str(second), str(first)]  # newest first
    assert rows[1]["status"] == "dead" and rows[1]["last_error"] == "HTTP 500"
    assert rows[1]["title"] == "Tab here"
    dead_only = CliRunner().invoke(cli, ["--config", str(config), "alerts", "--status", "dead"])
    assert len(dead_only.output.splitlines()) == 2


def test_retry_one_and_all_dead(tmp_path: Path, receiver: Site) -> None:
    config, store = setup(tmp_path, receiver.port)
    ids = [add_alert(store, "hook") for _ in range(3)]
    store.db.execute("UPDATE alerts SET status = 'dead', attempts = 10")
    key = row(store, ids[0])["alert_key"]
    result = CliRunner().invoke(cli, ["alerts", "retry", key, "--config", str(config)])
    assert result.exit_code == 0 and "re-queued 1 alert" in result.output
    assert row(store, ids[0])["status"] == "pending" and row(store, ids[0])["attempts"] == 0
    result = CliRunner().invoke(cli, ["alerts", "retry", "--dead", "--config", str(config)])
    assert "re-queued 2 alerts" in result.output
    assert store.outbox.counts() == {"pending": 3}
    missing = CliRunner().invoke(cli, ["alerts", "retry", "999", "--config", str(config)])
    assert missing.exit_code == 1
    usage = CliRunner().invoke(cli, ["alerts", "retry", "--config", str(config)])
    assert usage.exit_code == 2


def test_send_a_test_message(tmp_path: Path, receiver: Site) -> None:
    config, _ = setup(tmp_path, receiver.port)
    result = CliRunner().invoke(cli, ["alerts", "test", "hook", "--config", str(config)])
    assert result.exit_code == 0, result.output
    (post,) = [r.json() for r in receiver.requests if r.method == "POST"]
    assert post["title"] == "[newsmon] newsmon test message"
    assert "delivery works" in post["message"]
    unknown = CliRunner().invoke(cli, ["alerts", "test", "nope", "--config", str(config)])
    assert unknown.exit_code == 2 and "no channel named nope" in unknown.output
    receiver.routes["/hook"] = (500, {}, b"no")
    failed = CliRunner().invoke(cli, ["alerts", "test", "hook", "--config", str(config)])
    assert failed.exit_code == 1 and "HTTP 500" in failed.output
