"""One way for tests to get a newsmon config: a real YAML file, read by the real loader.

``ConfigFactory(folder).write(...)`` writes ``folder/newsmon.yaml`` and returns its
path (for ``newsmon --config``); ``load(...)`` also reads it back with
``load_config``, so every test config is validated like a user's. The
``make_config`` fixture in ``tests/conftest.py`` is a factory on ``tmp_path``.

The base is what nearly every test needs: the repository's rule pack, loopback
(127.0.0.0/8) allowed, a 10 s fetch timeout, analysis in-process. Each section
given merges over the base key by key (``fetch={"timeout": "1s"}`` keeps the
allow-list); ``feeds``, ``channels`` and ``rules`` replace it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ruamel.yaml import YAML

from monitor.config import Config, load_config
from tests.helpers.paths import REPO

RULES = REPO / "config" / "rules"
BASE: dict[str, Any] = {
    "database": "state/test.db",  # relative: next to the config file
    "rules": [str(RULES)],
    # backlog_as_seen off: most tests are about what a feed's first poll alerts on.
    "fetch": {"allow_networks": ["127.0.0.0/8"], "timeout": "10s", "backlog_as_seen": False},
    "analysis": {"workers": 0},
    # per_story off: most tests count alerts per article; tests/test_stories_* turn it on.
    "delivery": {"per_story": False},
}

ORDER = ("env_file", "database", "feeds", "channels", "rules", "fetch", "analysis", "delivery",
         "service")
Feed = str | Mapping[str, Any] | BaseModel  # a URL, a mapping, or a FeedConfig
Channel = Mapping[str, Any] | BaseModel


class ConfigFactory:
    """Writes newsmon configs into one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def data(
        self, *, feeds: Iterable[Feed] | None = None, interval: str | None = None,
        channels: Iterable[Channel] | None = None, rules: Sequence[str | Path] | None = None,
        database: str | Path | None = None, fetch: Mapping[str, Any] | None = None,
        analysis: Mapping[str, Any] | None = None, delivery: Mapping[str, Any] | None = None,
        service: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The config as plain data. ``interval`` is the poll interval of every feed
        that sets none; ``extra`` holds further top-level keys (``env_file``, ...)."""
        data: dict[str, Any] = {key: _plain(value) for key, value in BASE.items()}
        if database is not None:
            data["database"] = str(database)
        if feeds is not None:
            data["feeds"] = [_feed(f, interval) for f in feeds]
        if channels is not None:
            data["channels"] = [_plain(c) for c in channels]
        if rules is not None:
            data["rules"] = [str(r) for r in rules]
        for key, section in (("fetch", fetch), ("analysis", analysis), ("delivery", delivery),
                             ("service", service)):
            if section is not None:
                data[key] = _merged(data.get(key, {}), _plain(section))
        data.update(_plain(extra or {}))
        # In the order a person writes them: a failing test's config reads top-down.
        return {key: data.pop(key) for key in ORDER if key in data} | data

    def write(self, *, name: str = "newsmon.yaml", **sections: Any) -> Path:
        """Write the config (sections as for ``data``) to ``folder/name``."""
        path = self.folder / name
        path.write_text(to_yaml(self.data(**sections)), encoding="utf-8")
        return path

    def load(self, *, environ: Mapping[str, str] | None = None, name: str = "newsmon.yaml",
             **sections: Any) -> Config:
        """Write the config, then read it back with the real ``load_config``."""
        return load_config(self.write(name=name, **sections), environ=environ)


def to_yaml(data: Mapping[str, Any]) -> str:
    """Block-style YAML as a person writes it (``  - url: ...``), ready for the loader."""
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(_plain(data), out)
    return out.getvalue()


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` containing ``text``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def _feed(feed: Feed, interval: str | None) -> dict[str, Any]:
    entry = {"url": feed} if isinstance(feed, str) else dict(_plain(feed))
    if interval is not None:
        entry.setdefault("interval", interval)
    return entry


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def _plain(value: Any) -> Any:
    """What YAML can write: models as the keys they set, paths as text, tuples as lists."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_defaults=True)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
