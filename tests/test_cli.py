"""The command line: help that teaches, --config everywhere, exit codes scripts can trust."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from monitor.cli.app import EXIT_CONFIG, cli
from tests.helpers.configs import ConfigFactory, line_of


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


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


def test_check_reports_what_it_found(make_config: ConfigFactory) -> None:
    result = run("--config", str(make_config.write()), "check")
    assert result.exit_code == 0, result.output
    assert "topics: " in result.output and "negotiation" in result.output
    assert "all checks passed" in result.output


def test_config_option_also_works_after_the_command(make_config: ConfigFactory) -> None:
    result = run("check", "--config", str(make_config.write()))
    assert result.exit_code == 0, result.output


def test_environment_variable_names_the_config(make_config: ConfigFactory) -> None:
    config = make_config.write()
    result = run("check", env={"NEWSMON_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert str(config) in result.output


def test_config_errors_exit_2_with_file_and_line(make_config: ConfigFactory) -> None:
    path = make_config.write(feeds=[{"url": "https://example.org/rss", "intervall": "5m"}])
    result = run("--config", str(path), "check")
    assert result.exit_code == EXIT_CONFIG
    line = line_of(path, "    intervall: 5m")  # column 5
    assert f"{path}:{line}:5: [feeds.0.intervall] unknown key" in result.output


def test_check_masks_a_bad_channel_url(make_config: ConfigFactory) -> None:
    secret = "slak://TTYPOSECRET/BTYPOSECRET/CTYPOSECRET"
    path = make_config.write(channels=[{"name": "team", "url": "${TEAM_URL}"}])
    result = run("--config", str(path), "--log-level", "debug", "check", env={"TEAM_URL": secret})
    assert result.exit_code == EXIT_CONFIG
    assert "channel team" in result.output and "slak://****" in result.output
    assert "TYPOSECRET" not in result.output


def test_once_with_an_unreachable_feed_exits_1(make_config: ConfigFactory) -> None:
    # Port 9 on loopback (discard) is closed here; the failure is recorded, not raised.
    path = make_config.write(feeds=["http://127.0.0.1:9/feed.xml"], fetch={"timeout": "5s"})
    result = run("--config", str(path), "once")
    assert result.exit_code == 1
    assert "1 feeds polled (1 failed)" in result.output
