"""Strict YAML reading shared by the config and the rule files.

PyYAML silently keeps the last of two duplicate keys, reads ``NO`` as false and
``1:30`` as 90, and expands alias bombs. ruamel.yaml in YAML 1.2 mode rejects
duplicate keys and reads ``NO`` and ``1:30`` as strings (the schema then names
them as wrong types). Aliases are refused outright: configs do not need them
and they are the way to build a bomb. Every error names the file, line and
column.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, NodeEvent

# Defined in the error tree; imported from here by the config and rule loaders.
from monitor.errors import ConfigError as ConfigError
from monitor.errors import ConfigErrors as ConfigErrors

MAX_NODES = 200_000  # far above any real config; bounds the work a file can ask for
MAX_BYTES = 5 * 1024 * 1024
# Nesting of lists and maps: real configs and rule files stay under 10. The loader
# recurses per level (20,000 nested lists took 84 s, then a RecursionError).
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class YamlDocument:
    path: Path
    data: Any  # CommentedMap / CommentedSeq / scalars, with line information


def _yaml() -> YAML:
    yaml = YAML(typ="rt")  # round-trip keeps line and column of every key and item
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def _check_events(text: str, path: Path) -> None:
    depth = 0
    for count, event in enumerate(_yaml().parse(io.StringIO(text)), 1):
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels of lists and maps",
                                  path=path, line=mark.line + 1, col=mark.column + 1)
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        if isinstance(event, AliasEvent) or (
            isinstance(event, NodeEvent) and getattr(event, "anchor", None)
        ):
            mark = event.start_mark
            raise ConfigError(
                "YAML anchors and aliases (&name, *name) are not allowed",
                path=path, line=mark.line + 1, col=mark.column + 1,
            )
        if count > MAX_NODES:
            mark = event.start_mark
            raise ConfigError(
                f"file has more than {MAX_NODES} YAML nodes", path=path, line=mark.line + 1
            )


def load_yaml_text(text: str, path: Path) -> YamlDocument:
    """Parse YAML text strictly; raise ConfigError naming path, line and column."""
    try:
        _check_events(text, path)
        data = _yaml().load(text)
    except ConfigError:
        raise
    except RecursionError:  # a guard above missed a way to nest: still a file error, not a crash
        raise ConfigError("YAML nested too deeply", path=path) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "duplicate key" in problem:
            # ruamel quotes both values; they may be secrets, so keep only the key
            problem = problem.split(" with value", 1)[0]
        raise ConfigError(
            f"invalid YAML: {problem}".replace("\n", " "), path=path,
            line=mark.line + 1 if mark else None, col=mark.column + 1 if mark else None,
        ) from None
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}".replace("\n", " "), path=path) from None
    return YamlDocument(path=path, data=data)


def load_yaml_file(path: Path) -> YamlDocument:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", path=path) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES} bytes", path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"file is not UTF-8 (byte {exc.start})", path=path) from None
    return load_yaml_text(text, path)


def locate(data: Any, loc: tuple[str | int, ...]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the deepest node of ``loc`` that exists."""
    line: int | None = None
    col: int | None = None
    node = data
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                ln, cl = node.lc.key(part)
                line, col = ln + 1, cl + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                ln, cl = node.lc.item(part)
                line, col = ln + 1, cl + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    if line is None and isinstance(data, CommentedMap | CommentedSeq):
        line, col = data.lc.line + 1, data.lc.col + 1
    return line, col


def to_plain(data: Any) -> Any:
    """ruamel containers → plain dicts/lists (keeps scalars)."""
    if isinstance(data, dict):
        return {str(k): to_plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_plain(v) for v in data]
    if isinstance(data, str):
        return str(data)  # ruamel's ScalarString subclasses → str
    return data


def validation_errors(exc: Any, doc: YamlDocument, prefix: tuple[str | int, ...] = ()) -> ConfigErrors:
    """A pydantic ValidationError → ConfigErrors with file, line and key.

    Input values are never echoed: they may hold secrets.
    """
    errors: list[ConfigError] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = prefix + tuple(err.get("loc", ()))
        line, col = locate(doc.data, loc)
        key = ".".join(str(p) for p in loc) or None
        msg = err.get("msg", "invalid value")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        errors.append(ConfigError(msg, path=doc.path, line=line, col=col, key=key))
    return ConfigErrors(errors)
