"""Docs kept true by tests: the configuration reference and the README commands."""

from __future__ import annotations

import re

from pydantic import BaseModel

from monitor.cli.app import cli
from monitor.config import ChannelConfig, Config, FeedConfig
from tests.helpers.paths import REPO


def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key a user can write, from the schema itself."""
    found = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        found.append(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.extend(keys(field.annotation, f"{prefix}{name}."))
    return found


def documented(section: str) -> set[str]:
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    part = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", part, re.M))


def test_every_config_key_is_documented() -> None:
    top = {k for k in keys(Config) if "." not in k}
    assert top <= documented("Top level")
    for section in ("fetch", "analysis", "delivery", "service"):
        wanted = {k.split(".", 1)[1] for k in keys(Config) if k.startswith(section + ".")}
        assert wanted <= documented(f"`{section}`"), section
    assert set(keys(FeedConfig)) <= documented("`feeds[]`")
    assert set(keys(ChannelConfig)) <= documented("`channels[]`")


def test_documented_keys_exist() -> None:
    """No stale key: everything in the reference is in the schema."""
    assert documented("`feeds[]`") <= set(keys(FeedConfig))
    assert documented("`channels[]`") <= set(keys(ChannelConfig))
    for section in ("fetch", "analysis", "delivery", "service"):
        real = {k.split(".", 1)[1] for k in keys(Config) if k.startswith(section + ".")}
        assert documented(f"`{section}`") <= real, section


def test_readme_commands_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", readme, re.S))
    used = set(re.findall(r"^newsmon ([a-z-]+)", blocks, re.M))
    assert used, "the README shows no newsmon command"
    assert used - {"--help"} <= set(cli.commands)


def test_readme_setup_is_two_make_targets() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
