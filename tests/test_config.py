"""Config validation: every error names the file, the line and the key.

Covers hostile-inputs.md section E: invalid YAML (32), unknown keys and YAML 1.1
coercions (33), alias bombs (34), missing secrets and unsafe env files (37).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from monitor.config import (
    Config,
    load_config,
    parse_duration,
    read_env_file,
    resolve_config_path,
)
from monitor.yamlfile import ConfigError, ConfigErrors


def write(tmp_path: Path, text: str, name: str = "newsmon.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path, environ=environ or {})
    return caught.value.errors


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - url: https://example.org/rss\n")
    config = load_config(path, environ={})
    assert config.database_path() == tmp_path / "newsmon.db"
    assert config.feeds[0].url == "https://example.org/rss"
    assert config.feed_interval(config.feeds[0]) == 600.0
    assert config.channels == ()


def test_durations_and_interval_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "feeds:\n"
        "  - {url: 'https://a.example/rss', interval: 10s}\n"
        "  - {url: 'https://b.example/rss', interval: 2d}\n"
        "  - {url: 'https://c.example/rss', interval: 15m}\n"
    ))
    config = load_config(path, environ={})
    intervals = [config.feed_interval(f) for f in config.feeds]
    assert intervals == [60.0, 6 * 3600.0, 900.0]  # floor 1 min, ceiling 6 h
    assert parse_duration("1.5h") == 5400.0
    with pytest.raises(ValueError):
        parse_duration("1:30")


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("feeds:\n\t- url: https://x.example/rss\n", 2, "'\\t'"),  # a tab
        ('feeds:\n  - url: "https://x.example/rss\n', 3, "invalid YAML"),  # unclosed quote
        ("database: a.db\ndatabase: b.db\n", 2, 'duplicate key "database"'),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = write(tmp_path, text)
    (error,) = errors_of(path)
    assert error.path == str(path)
    assert error.line == line
    assert needle in str(error)


def test_duplicate_key_error_does_not_echo_values(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "channels:\n  - name: a\n    url: json://SECRET-ONE@x/\n    url: json://SECRET-TWO@x/\n"
    ))
    (error,) = errors_of(path)
    assert "duplicate key" in str(error)
    assert "SECRET" not in str(error)


def test_unknown_keys_and_yaml_11_coercions_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "feeds:\n"
        "  - url: https://example.org/rss\n"
        "    intervall: 5m\n"  # typo
        "  - url: https://example.org/other\n"
        "    enabled: off\n"  # YAML 1.1 would make this False
        "    interval: 1:30\n"  # YAML 1.1 would make this 90
        "fetch:\n"
        "  fetch_articles: NO\n"
    ))
    errors = {e.key: e for e in errors_of(path)}
    assert set(errors) == {"feeds.0.intervall", "feeds.1.enabled", "feeds.1.interval",
                           "fetch.fetch_articles"}
    assert errors["feeds.0.intervall"].line == 3
    assert "unknown key" in errors["feeds.0.intervall"].message
    assert errors["feeds.1.enabled"].line == 5
    assert errors["feeds.1.interval"].line == 6
    assert errors["fetch.fetch_articles"].line == 8


def test_country_no_stays_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - url: https://example.org/rss\n    tags: [NO, yes]\n")
    config = load_config(path, environ={})
    assert config.feeds[0].tags == ("NO", "yes")


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    path = write(tmp_path, "\n".join(levels) + "\n")
    started = time.monotonic()
    (error,) = errors_of(path)
    assert time.monotonic() - started < 1.0
    assert "aliases" in error.message
    assert error.line == 1


def test_non_http_feed_urls_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "feeds:\n  - url: file:///etc/passwd\n  - url: /etc/passwd\n  - url: feed://x.example/\n"
        "  - url: ftp://x.example/feed\n"
    ))
    errors = errors_of(path)
    assert sorted(e.key for e in errors) == [f"feeds.{i}.url" for i in range(4)]
    assert all("http" in e.message for e in errors)


def test_missing_secret_variable_is_named_without_a_value(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  - name: slack\n    url: ${SLACK_URL}\n")
    (error,) = errors_of(path, environ={"SLACK_URL": ""})
    assert "SLACK_URL" in error.message
    assert error.line == 3
    assert error.key == "channels.0.url"


def test_secrets_come_from_environment_and_are_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  - name: hook\n    url: ${HOOK}\n")
    config = load_config(path, environ={"HOOK": "json://user:pw@127.0.0.1/x"})
    assert config.channels[0].url == "json://user:pw@127.0.0.1/x"
    assert "json://user:pw@127.0.0.1/x" in config.secrets
    assert "pw@" not in repr(config)  # secrets are kept out of the repr...
    assert "secrets" not in config.model_dump()  # ...and out of any dump


def test_env_file_is_read_and_must_be_private(tmp_path: Path) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text("# comment\nHOOK='json://127.0.0.1/from-file'\n", encoding="utf-8")
    env_file.chmod(0o600)
    path = write(tmp_path, "env_file: secrets.env\nchannels:\n  - name: hook\n    url: ${HOOK}\n")
    assert load_config(path, environ={}).channels[0].url == "json://127.0.0.1/from-file"
    env_file.chmod(0o644)
    (error,) = errors_of(path)
    assert "readable by others" in error.message
    assert error.path == str(env_file)


def test_env_file_syntax_error_names_the_line(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("GOOD=1\nthis is not an assignment\n", encoding="utf-8")
    env_file.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        read_env_file(env_file)
    assert caught.value.line == 2


def test_duplicate_feeds_and_channels_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "feeds:\n  - url: https://example.org/rss\n  - url: https://example.org/rss\n"
    ))
    (error,) = errors_of(path)
    assert "listed twice" in error.message


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path / "absent.yaml")
    assert "not found" in error.message
    (error,) = errors_of(write(tmp_path, "- just\n- a list\n"))
    assert "mapping" in error.message


def test_config_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSMON_CONFIG", raising=False)
    assert resolve_config_path(None) == Path("config/newsmon.yaml")
    monkeypatch.setenv("NEWSMON_CONFIG", "/etc/newsmon/newsmon.yaml")
    assert resolve_config_path(None) == Path("/etc/newsmon/newsmon.yaml")
    assert resolve_config_path("mine.yaml") == Path("mine.yaml")


def test_rule_folders_expand_to_yaml_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (rules / name).write_text("", encoding="utf-8")
    config = Config(rules=(Path("rules"), Path("extra.yaml")), source=tmp_path / "c.yaml")
    assert config.rule_files() == [rules / "a.yml", rules / "b.yaml", tmp_path / "extra.yaml"]


def test_shipped_config_is_valid() -> None:
    repo = Path(__file__).resolve().parents[1]
    config = load_config(repo / "config" / "newsmon.yaml", environ=dict(os.environ))
    assert len(config.feeds) >= 10
    assert config.channels == ()  # the main job must work before any secret is set
    assert [p.name for p in config.rule_files()] == ["ukraine-war.yaml"]


def test_health_staleness_allows_for_large_per_feed_floors() -> None:
    """A feed whose own floor is 2 h ticks every 2 h: a cycle can take that long,
    so status must not call the daemon stale after 3 x its 10 min interval."""
    from monitor.config import FeedConfig
    from monitor.runtime.status import stale_after

    slow = Config(feeds=(FeedConfig(url="https://a.example/rss", min_interval=7200.0),))
    assert stale_after(slow) == 3 * 7200.0
    normal = Config(feeds=(FeedConfig(url="https://a.example/rss", interval=900.0),))
    assert stale_after(normal) == 3 * 900.0
    assert stale_after(Config()) is None
