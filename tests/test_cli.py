"""The command line: help that teaches, --config everywhere, exit codes scripts can trust."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli.app import EXIT_CONFIG, cli
from tests.helpers.paths import REPO

RULES = REPO / "config" / "rules"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"database: t.db\nrules:\n  - {RULES}\n{extra}", encoding="utf-8")
    return path


def test_help_lists_every_command_with_an_example() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("run", "once", "check", "test-rule", "classify", "eval"):
        assert f"  {command}" in result.output
    assert "Exit codes" in result.output
    assert "newsmon once" in result.output


@pytest.mark.parametrize("command", ["run", "once", "check"])
def test_every_core_command_takes_config(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "--config" in result.output


def test_check_reports_what_it_found(tmp_path: Path) -> None:
    result = run("--config", str(config_file(tmp_path)), "check")
    assert result.exit_code == 0, result.output
    assert "topics: " in result.output and "negotiation" in result.output
    assert "all checks passed" in result.output


def test_config_option_also_works_after_the_command(tmp_path: Path) -> None:
    result = run("check", "--config", str(config_file(tmp_path)))
    assert result.exit_code == 0, result.output


def test_environment_variable_names_the_config(tmp_path: Path) -> None:
    result = run("check", env={"NEWSMON_CONFIG": str(config_file(tmp_path))})
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "c.yaml") in result.output


def test_config_errors_exit_2_with_file_and_line(tmp_path: Path) -> None:
    path = config_file(tmp_path, "feeds:\n  - url: https://example.org/rss\n    intervall: 5m\n")
    result = run("--config", str(path), "check")
    assert result.exit_code == EXIT_CONFIG
    assert f"{path}:6:5: [feeds.0.intervall] unknown key" in result.output


def test_check_masks_a_bad_channel_url(tmp_path: Path) -> None:
    secret = "slak://TTYPOSECRET/BTYPOSECRET/CTYPOSECRET"
    path = config_file(tmp_path, "channels:\n  - name: team\n    url: ${TEAM_URL}\n")
    result = run("--config", str(path), "--log-level", "debug", "check", env={"TEAM_URL": secret})
    assert result.exit_code == EXIT_CONFIG
    assert "channel team" in result.output and "slak://****" in result.output
    assert "TYPOSECRET" not in result.output


def test_once_with_an_unreachable_feed_exits_1(tmp_path: Path) -> None:
    # Port 9 on loopback (discard) is closed here; the failure is recorded, not raised.
    path = config_file(tmp_path, (
        "feeds:\n  - url: http://127.0.0.1:9/feed.xml\n"
        "fetch:\n  allow_networks: ['127.0.0.0/8']\n  timeout: 5s\nanalysis:\n  workers: 0\n"
    ))
    result = run("--config", str(path), "once")
    assert result.exit_code == 1
    assert "1 feeds polled (1 failed)" in result.output
