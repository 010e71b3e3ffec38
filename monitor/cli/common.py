"""What every ``newsmon`` command shares: the exit codes, ``--config``, the State.

Command modules (``cli.py`` and the ``cli_*.py`` beside their stages) import
from here, and ``cli.py`` imports them: the dependency runs one way.

Exit codes, for scripts:
  0  success
  1  the command ran but something failed (a feed, a delivery, an unhealthy state)
  2  usage or configuration error (nothing was done)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from click.exceptions import NoArgsIsHelpError

from monitor.config import Config, load_config, resolve_config_path, secret_values
from monitor.logs import setup_logging
from monitor.yamlfile import ConfigErrors

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from monitor.storage import Storage

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

CONFIG_HELP = (
    "Config file. Default: $NEWSMON_CONFIG, then config/newsmon.yaml."
)


class State:
    """What the group's options resolved to, handed to every command."""

    def __init__(self, config_path: str | None, log_level: str | None, log_format: str | None):
        self.config_path = config_path
        self.log_level = log_level
        self.log_format = log_format
        self._config: Config | None = None

    def config(self) -> Config:
        """Load the config (once); on error print every problem and exit 2."""
        if self._config is None:
            path = resolve_config_path(self.config_path)
            try:
                self._config = load_config(path)
            except ConfigErrors as exc:
                echo_errors(exc)
                raise SystemExit(EXIT_CONFIG) from None
            setup_logging(self.log_level or self._config.service.log_level,
                          self.log_format or self._config.service.log_format,
                          secrets=secret_values(self._config))
        return self._config


pass_state = click.make_pass_decorator(State)
Command = TypeVar("Command", bound=Callable[..., Any])


def config_option(func: Command) -> Command:
    """``--config`` on every command, as well as on the group."""

    def callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        state = ctx.find_object(State)
        if value and state is not None:
            state.config_path = value

    return click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
                        help=CONFIG_HELP, expose_value=False, callback=callback,
                        is_eager=True)(func)


# --- errors -------------------------------------------------------------------------------


def echo_errors(exc: ConfigErrors) -> None:
    """Each error of ``exc`` as an ``error:`` line on stderr (``file:line: ...``)."""
    for error in exc.errors:
        click.echo(f"error: {error}", err=True)


def fail_errors(exc: ConfigErrors, code: int = EXIT_CONFIG) -> NoReturn:
    """``echo_errors``, then exit with ``code`` (a config or rule error: 2)."""
    echo_errors(exc)
    sys.exit(code)


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    """Print ``error: MESSAGE`` (one line, on stderr) and exit with ``code``."""
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


class _OneLineError(click.ClickException):
    """A click error shown as one ``error:`` line, with a pointer to the command's help."""

    def __init__(self, original: click.ClickException) -> None:
        super().__init__(" ".join(original.format_message().split()))
        self.exit_code = original.exit_code  # type: ignore[misc]  # a ClassVar in click; keeps usage's 2
        ctx = getattr(original, "ctx", None)
        self.help_hint = (f" (see '{ctx.command_path} --help')"
                          if isinstance(original, click.UsageError) and ctx is not None else "")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}{self.help_hint}", err=True)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except (NoArgsIsHelpError, _OneLineError):
        raise
    except click.ClickException as exc:
        raise _OneLineError(exc) from None


class NewsmonGroup(click.Group):
    """The top group: click's usage errors (bad option, missing file...) become one
    ``error:`` line naming the option or file, exit code 2, like every other error."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


# --- terminal or pipe ------------------------------------------------------------------------


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is an interactive terminal (not a pipe, file or test runner)."""
    try:
        return bool(getattr(stream, "isatty", lambda: False)())
    except ValueError:  # a closed stream
        return False


def cell(value: Any) -> str:
    """One plain table cell: no tabs or newlines (they would break the TSV)."""
    return " ".join(str(value).split()) if value is not None else ""


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                title: str | None = None, styles: Sequence[str | None] | None = None,
                justify: Sequence[JustifyMethod] | None = None) -> None:
    """A rich table on standard output (a terminal; colours follow ``NO_COLOR``)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, overflow="fold",
                         justify=justify[i] if justify else "left")
    for i, row in enumerate(rows):
        # Text, not markup: feed titles and server errors may hold "[/]".
        table.add_row(*(v if isinstance(v, Text) else Text(cell(v)) for v in row),
                      style=styles[i] if styles else None)
    Console().print(table)


def print_tsv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """The plain form of a table: a header line, then one tab-separated line a row."""
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join(cell(v) for v in row))


class Progress:
    """A rich progress bar on standard error when it is a terminal; nothing otherwise.

    Standard output stays clean for pipes either way. Use as a context manager;
    ``advance()`` after each unit of work.
    """

    def __init__(self, total: int | None, label: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        if is_terminal(sys.stderr):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
                redirect_stdout=False)  # stdout carries results: never through the bar
            self._task = self._bar.add_task(label, total=total)

    @property
    def active(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def echo(self, message: str) -> None:
        """A line on standard error, above the bar when there is one."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)


def open_database(state: State, *, readonly: bool = False) -> Storage:
    """The configured database (read-only if asked); exit 1 naming it when it is
    missing or unusable. Commands never create a database: ``newsmon run`` does."""
    from monitor.storage import StoreError, open_readonly, open_storage

    config = state.config()
    if config.database_missing():
        fail(f"no database at {config.database_label()} (has newsmon run yet?)", EXIT_FAILED)
    target = config.database_target()  # a SQLite file or a PostgreSQL URL
    try:
        return open_readonly(target) if readonly else open_storage(target)
    except StoreError as exc:
        fail(str(exc), EXIT_FAILED)


@contextmanager
def database(state: State, *, readonly: bool = False) -> Iterator[Storage]:
    """``open_database``, closed at the end of the block; a ``StoreError`` the block
    does not handle itself exits 1 with its message (never a traceback)."""
    from monitor.storage import StoreError

    storage = open_database(state, readonly=readonly)
    try:
        yield storage
    except StoreError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        storage.close()
