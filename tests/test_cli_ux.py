"""Command-line UX across every command: help that teaches, --config anywhere, plain
output when piped, progress bars only on a terminal, one-line errors, trusted exit codes.

click's CliRunner is not a terminal, so it stands for a pipe. A terminal is a real
pseudo-terminal (``pty``) on the command's stderr, with stdout sent to a file: that is
exactly "progress on a terminal, results piped".
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from monitor.cli import alerts as cli_alerts
from monitor.cli.app import cli
from monitor.storage import open_storage
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert
from tests.helpers.servers import Site, rss

ANSI = re.compile(r"\x1b\[")
SECRET = "SEKRIT-TOKEN-42"
# Rich would colour a table or draw a bar if anything asked it to, even into a pipe.
FORCING = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "NO_COLOR": None}

COMMANDS = [
    ("run",), ("once",), ("check",), ("status",), ("feeds",), ("feeds", "import"),
    ("feeds", "export"), ("feeds", "discover"), ("alerts",), ("alerts", "retry"),
    ("alerts", "test"), ("db",), ("db", "backup"), ("db", "maintain"), ("test-rule",),
    ("classify",), ("eval",), ("train",), ("backtest",), ("search",), ("web",), ("stories",),
    ("stories", "show"), ("cluster",), ("feedback",), ("labels",), ("labels", "export"),
    ("poller",), ("worker",), ("deliver",),
]


# Offline commands that read only their input file, never a config.
CONFIG_FREE = {("cluster",)}


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def config_file(tmp_path: Path, feeds: list[str | dict[str, str]] | None = None) -> Path:
    """Database ``t.db``; a channel whose URL carries SECRET, which no output may show."""
    return ConfigFactory(tmp_path).write(
        name="c.yaml", database="t.db", feeds=feeds, fetch={"timeout": "5s"},
        channels=[{"name": "hook", "url": f"json://127.0.0.1:9/hook?token={SECRET}"}])


def articles(path: Path, n: int, *, broken_line: int | None = None,
             labels: bool = False) -> Path:
    lines = []
    for i in range(1, n + 1):
        if i == broken_line:
            lines.append("{not json")
            continue
        rec: dict[str, object] = {"id": i, "title": "Truce talks",
                                  "text": "A ceasefire was agreed in the talks."}
        if labels:
            rec["labels"] = {"ceasefire": 1, "aid": 0}
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_error_line(result: Result) -> str:
    """The run printed exactly one ``error:`` line, no usage block, no traceback."""
    assert "Traceback" not in result.output and "Usage:" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


# --- help ---------------------------------------------------------------------------------


def test_the_command_list_here_is_complete() -> None:
    """A new command must come with its help checked below."""
    found: list[tuple[str, ...]] = []

    def walk(group: click.Group, path: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            found.append((*path, name))
            if isinstance(command, click.Group):
                walk(command, (*path, name))

    walk(cli, ())
    assert sorted(found) == sorted(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_teaches_with_an_example(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    text = result.output
    summary = text.split("\n\n")[1].strip()
    assert summary and "\n" not in summary, f"one-line summary wanted, got {summary!r}"
    assert "Examples:" in text
    example = next(line.strip() for line in text.split("Examples:")[1].splitlines()[1:]
                   if line.strip())
    assert example.startswith("newsmon "), example
    assert (path[-1] in example.split()) or path == ("db",)
    if path not in CONFIG_FREE:
        assert "--config" in text
    if path not in {("db",)}:
        assert "Exit codes:" in text


def test_top_help_has_quick_start_and_exit_codes() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "newsmon once" in result.output and "Exit codes: 0 ok, 1" in result.output


@pytest.mark.parametrize("path", [("status",), ("feeds",), ("feeds", "discover"),
                                  ("alerts",), ("eval",), ("once",)], ids=" ".join)
def test_machine_readable_form_is_json(path: tuple[str, ...]) -> None:
    assert "--json" in invoke(*path, "--help").output


# --- --config anywhere ----------------------------------------------------------------------

ARGS = {  # what each command needs besides --config to get as far as loading it
    ("feeds", "import"): ["list.opml"], ("feeds", "discover"): ["https://example.org/"],
    ("alerts", "retry"): ["--dead"], ("alerts", "test"): ["hook"],
    ("db", "backup"): ["backup.db"], ("test-rule",): ["--text", "truce"],
    ("classify",): ["-i", "IN", "-o", "out.jsonl"], ("eval",): ["-i", "IN"],
    ("train",): ["-i", "IN"], ("backtest",): ["--rules", "config/rules"],
    ("search",): ["truce"], ("stories", "show"): ["1"], ("cluster",): ["-i", "IN", "-o", "out.jsonl"],
    ("feedback",): ["1", "relevant"],
}


@pytest.mark.parametrize("path", [p for p in COMMANDS if p != ("db",) and p not in CONFIG_FREE],
                         ids=" ".join)
def test_config_is_accepted_after_the_subcommand(tmp_path: Path,
                                                 path: tuple[str, ...]) -> None:
    """Pointing --config (after the command) at a missing file fails on that file, so the
    option was accepted and used; the group's position works for nested commands too."""
    src = articles(tmp_path / "in.jsonl", 1)
    args = [str(src) if a == "IN" else a for a in ARGS.get(path, [])]
    missing = tmp_path / "absent.yaml"
    result = invoke(*path, *args, "--config", str(missing))
    assert result.exit_code == 2, result.output
    assert one_error_line(result).startswith(f"error: {missing}:"), result.output
    if len(path) == 2:
        result = invoke(path[0], "--config", str(missing), path[1], *args)
        assert result.exit_code == 2 and f"error: {missing}:" in result.output, result.output


def test_config_after_the_subcommand_is_the_one_used(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    open_storage(tmp_path / "t.db").close()
    result = invoke("--config", str(tmp_path / "absent.yaml"), "db", "backup",
                    str(tmp_path / "b.db"), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b.db").exists()


# --- piped output ---------------------------------------------------------------------------


def test_piped_lists_are_plain_tab_separated_without_ansi(tmp_path: Path) -> None:
    config = config_file(tmp_path, [{"url": "http://127.0.0.1:9/a.xml", "name": "A"}])
    store = open_storage(tmp_path / "t.db")
    add_alert(store, "hook", title="Bracketed [/] [bold]title")
    store.close()
    for args in (["feeds"], ["alerts"], ["status"], ["check"], ["feeds", "export"],
                 ["alerts", "--json"], ["feeds", "--json"], ["status", "--json"]):
        result = invoke(*args, "--config", str(config), env=FORCING)
        assert result.exit_code in (0, 1), (args, result.output)
        assert not ANSI.search(result.output), (args, result.output)
    feeds = invoke("feeds", "--config", str(config), env=FORCING).stdout.splitlines()
    assert feeds[0].split("\t")[:3] == ["name", "url", "health"]
    assert feeds[1].split("\t")[:3] == ["A", "http://127.0.0.1:9/a.xml", "new"]
    listed = json.loads(invoke("alerts", "--json", "--config", str(config)).stdout)
    assert listed[0]["title"] == "Bracketed [/] [bold]title" and listed[0]["channel"] == "hook"
    assert SECRET not in json.dumps(listed)


def test_piped_classify_and_eval_draw_no_progress(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    src = articles(tmp_path / "in.jsonl", 5, labels=True)
    result = invoke("classify", "-i", str(src), "-o", "-", "--config", str(config),
                    env=FORCING)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1, 2, 3, 4, 5]
    assert not ANSI.search(result.output) and "classifying" not in result.output
    assert result.stderr.strip() == "5 articles classified, 0 bad lines → standard output"
    result = invoke("eval", "-i", str(src), "--config", str(config), env=FORCING)
    assert result.exit_code == 0, result.output
    assert not ANSI.search(result.output) and "evaluating" not in result.output
    assert "ceasefire" in result.stdout and not result.stderr


def test_a_terminal_table_survives_markup_in_titles(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Feed-supplied text goes into rich tables as text, never as markup."""
    config = config_file(tmp_path)
    store = open_storage(tmp_path / "t.db")
    add_alert(store, "hook", title="Bracketed [/] [bold]title")
    store.close()
    monkeypatch.setattr(cli_alerts, "is_terminal", lambda stream: True)
    result = invoke("alerts", "--config", str(config), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Bracketed [/] [bold]title" in result.output and "┃" in result.output


def test_terminal_tables_are_coloured_unless_no_color(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_file(tmp_path)
    store = open_storage(tmp_path / "t.db")
    add_alert(store, "hook")  # pending: yellow
    store.close()
    monkeypatch.setattr(cli_alerts, "is_terminal", lambda stream: True)
    tty = {"TTY_COMPATIBLE": "1", "COLUMNS": "200", "NO_COLOR": None}
    coloured = invoke("alerts", "--config", str(config), env=tty)
    assert "\x1b[33m" in coloured.stdout
    plain = invoke("alerts", "--config", str(config), env={**tty, "NO_COLOR": "1"})
    assert "┃" in plain.stdout and "pending" in plain.stdout
    assert not re.search(r"\x1b\[[0-9;]*(3[0-8]|9[0-7])(;[0-9]+)*m", plain.stdout)


# --- errors and exit codes -------------------------------------------------------------------


def test_classify_missing_input_is_2_and_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = invoke("classify", "-i", str(missing), "-o", str(tmp_path / "o.jsonl"),
                    "--config", str(config_file(tmp_path)))
    assert result.exit_code == 2
    assert str(missing) in one_error_line(result)


def test_classify_broken_line_is_1_and_names_file_and_line(tmp_path: Path) -> None:
    src = articles(tmp_path / "in.jsonl", 3, broken_line=2)
    out = tmp_path / "o.jsonl"
    result = invoke("classify", "-i", str(src), "-o", str(out),
                    "--config", str(config_file(tmp_path)))
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: {src}:2: invalid JSON")
    assert len(out.read_text().splitlines()) == 2


def test_classify_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    src = articles(tmp_path / "in.jsonl", 2)
    before = src.read_text()
    result = invoke("classify", "-i", str(src), "-o", str(src),
                    "--config", str(config_file(tmp_path)))
    assert result.exit_code == 2 and "overwrite the input" in one_error_line(result)
    assert src.read_text() == before


def test_eval_broken_line_is_1_and_names_file_and_line(tmp_path: Path) -> None:
    src = articles(tmp_path / "lab.jsonl", 3, broken_line=3, labels=True)
    result = invoke("eval", "-i", str(src), "--json", "--config", str(config_file(tmp_path)))
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: {src}:3: invalid JSON")
    assert json.loads(result.stdout)["bad_lines"] == 1


def test_alerts_test_unknown_channel_is_2_and_secrets_stay_hidden(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    unknown = invoke("alerts", "test", "nope", "--config", str(config))
    assert unknown.exit_code == 2
    assert one_error_line(unknown) == "error: no channel named nope (channels: hook)"
    failed = invoke("--log-level", "debug", "alerts", "test", "hook", "--config", str(config))
    assert failed.exit_code == 1 and "error: test message to hook failed" in failed.output
    assert SECRET not in failed.output and "Traceback" not in failed.output


def test_db_backup_onto_an_existing_file_is_1_without_force(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    open_storage(tmp_path / "t.db").close()
    dest = tmp_path / "b.db"
    dest.write_text("keep me")
    result = invoke("db", "backup", str(dest), "--config", str(config))
    assert result.exit_code == 1
    assert one_error_line(result) == f"error: {dest} exists (use --force to replace it)"
    assert dest.read_text() == "keep me"
    assert invoke("db", "backup", "--force", str(dest), "--config", str(config)).exit_code == 0
    assert dest.read_bytes().startswith(b"SQLite format 3")


def test_commands_reading_the_database_fail_cleanly_without_one(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    for args in (["alerts"], ["alerts", "retry", "3"], ["status"], ["db", "maintain"],
                 ["db", "backup", str(tmp_path / "b.db")]):
        result = invoke(*args, "--config", str(config))
        assert result.exit_code == 1, (args, result.output)
        assert one_error_line(result) == (f"error: no database at {tmp_path / 't.db'}"
                                          " (has newsmon run yet?)"), args
    assert not (tmp_path / "t.db").exists()  # listing did not create one


def test_a_corrupt_database_is_one_error_line(tmp_path: Path) -> None:
    config = config_file(tmp_path, ["http://127.0.0.1:9/a.xml"])
    (tmp_path / "t.db").write_bytes(b"this is not a database" * 100)
    for args in (["feeds"], ["alerts"], ["db", "maintain"]):
        result = invoke(*args, "--config", str(config))
        assert result.exit_code == 1, (args, result.output)
        assert "t.db" in one_error_line(result), args


def test_export_to_an_unwritable_path_is_2_without_a_traceback(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "f.opml"
    result = invoke("feeds", "export", "-o", str(out), "--config", str(config_file(tmp_path)))
    assert result.exit_code == 2
    assert one_error_line(result) == f"error: cannot write {out}: No such file or directory"


@pytest.mark.parametrize("args", [["nosuch"], ["once", "--confg", "x"],
                                  ["classify", "-o", "x"], ["alerts", "retry"]], ids=" ".join)
def test_usage_errors_are_one_line_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "--help" in line  # points at the command's help
    assert len(result.output.splitlines()) == 1


# --- progress on a terminal ---------------------------------------------------------------------


def on_terminal(args: list[str], cwd: Path) -> tuple[int, bytes, bytes]:
    """Run ``newsmon ARGS`` with stderr on a pseudo-terminal and stdout to a file."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(TERM="xterm-256color", COLUMNS="100")
    with (cwd / "stdout.bin").open("wb+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        code = proc.wait(timeout=60)
        out.seek(0)
        return code, out.read(), b"".join(chunks)


def test_classify_and_eval_show_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    src = articles(tmp_path / "in.jsonl", 40, labels=True)

    code, out, err = on_terminal(["classify", "-i", str(src), "-o", "-", "--config",
                                  str(config)], tmp_path)
    assert code == 0, err
    assert b"classifying" in err and "━".encode() in err and b"/40" in err
    assert b"40 articles classified" in err
    assert not ANSI.search(out.decode())  # results stay clean for the pipe
    assert len([json.loads(line) for line in out.decode().splitlines()]) == 40

    code, out, err = on_terminal(["eval", "-i", str(src), "--json", "--config",
                                  str(config)], tmp_path)
    assert code == 0, err
    assert b"evaluating" in err and "━".encode() in err
    assert json.loads(out)["bad_lines"] == 0


def test_import_check_shows_a_bar_on_a_terminal_and_lines_when_piped(
        tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    site.routes["/a.xml"] = (200, {"Content-Type": "application/rss+xml"},
                             rss([{"title": "x", "guid": "1"}], title="A"))
    opml = tmp_path / "list.opml"
    opml.write_text(f'<?xml version="1.0"?><opml version="2.0"><body>'
                    f'<outline type="rss" text="A" xmlUrl="{site.url("/a.xml")}"/>'
                    f'<outline type="rss" text="B" xmlUrl="{site.url("/b.xml")}"/>'
                    f"</body></opml>")
    config = config_file(tmp_path)
    piped = invoke("feeds", "import", str(opml), "--check", "--dry-run",
                   "--config", str(config), env=FORCING)
    assert piped.exit_code == 1, piped.output
    assert f"ok\t{site.url('/a.xml')}" in piped.stderr
    assert f"rejected\t{site.url('/b.xml')}\thttp_status" in piped.stderr
    assert not ANSI.search(piped.output) and "checking feeds" not in piped.output
    assert piped.stdout == f"would add\t{site.url('/a.xml')}\n"

    # A terminal on stderr (rich told so; the command's own check patched).
    import monitor.cli.common as common

    monkeypatch.setattr(common, "is_terminal", lambda stream: stream is sys.stderr)
    shown = invoke("feeds", "import", str(opml), "--check", "--dry-run",
                   "--config", str(config), env={"TTY_COMPATIBLE": "1", "NO_COLOR": None})
    assert shown.exit_code == 1, shown.output
    assert "checking feeds" in shown.stderr and "━" in shown.stderr
    assert re.search(rf"rejected\s+{re.escape(site.url('/b.xml'))}\s+http_status", shown.stderr)
    assert not ANSI.search(shown.stdout)
