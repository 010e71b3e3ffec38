"""Every ``newsmon ...`` command the package, the README or the docs tell a user to run exists.

``newsmon status`` once told users to run ``newsmon db retry-dead``, a command
that never existed. This walks each mention through the real click group.
"""

from __future__ import annotations

import re

import click
import pytest

from monitor.cli import cli
from tests.helpers.paths import REPO

# `newsmon ...` / ``newsmon ...`` spans, and command lines in shell code blocks.
_SPAN = re.compile(r"`{1,2}(newsmon [^`\n]+?)`{1,2}")
_BLOCK_LINE = re.compile(r"^\s*(?:\$ )?(newsmon [^#\n]+)", re.M)


def _mentions() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    sources = [*sorted((REPO / "monitor").rglob("*.py")), REPO / "README.md",
               *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "deploy").glob("*.md"))]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(REPO))
        found += [(where, m.group(1).strip()) for m in _SPAN.finditer(text)]
        in_block = False
        for line in text.splitlines():
            if line.lstrip().startswith("```"):
                in_block = not in_block
            elif in_block and (m := _BLOCK_LINE.match(line)):
                found.append((where, m.group(1).strip()))
    return found


def _problem(command_line: str) -> str | None:
    """Why this command line would not run, or None."""
    # "[--json]" marks an optional part; two spaces start a description column.
    usage = re.split(r"\s{2,}", command_line)[0].replace("[", " ").replace("]", " ")
    tokens = [t for t in usage.split()[1:] if t != "|"]
    command: click.Command = cli
    path = ["newsmon"]
    while tokens and isinstance(command, click.Group):
        token = tokens[0]
        if token.startswith("-"):
            break
        sub = command.commands.get(token)
        if sub is None:
            return f"{' '.join(path)} has no command {token!r}"
        command, path = sub, [*path, token]
        tokens = tokens[1:]
    params = [*command.params, *cli.params]
    options = {opt for p in params for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
    options |= {"--help", "-h"}
    for token in tokens:
        name = token.split("=", 1)[0]
        if name.startswith("--") and name not in options:
            return f"{' '.join(path)} has no option {name}"
    return None


def test_there_are_mentions_to_check() -> None:
    assert len(_mentions()) > 20


@pytest.mark.parametrize("where,command_line", _mentions())
def test_every_mentioned_command_exists(where: str, command_line: str) -> None:
    if any(mark in command_line for mark in ("...", "COMMAND", "<")):
        pytest.skip("a placeholder, not a command line")
    problem = _problem(command_line)
    assert problem is None, f"{where}: `{command_line}`: {problem}"


def test_the_checker_catches_the_old_status_hint() -> None:
    assert _problem("newsmon db retry-dead") is not None
    assert _problem("newsmon alerts retry --dead") is None
    assert _problem("newsmon alerts retry --deadly") is not None
