"""What every ``newsmon`` command shares: the exit codes, ``--config``, the State.

Command modules (``cli.py`` and the ``cli_*.py`` beside their stages) import
from here, and ``cli.py`` imports them: the dependency runs one way.

Exit codes, for scripts:
  0  success
  1  the command ran but something failed (a feed, a delivery, an unhealthy state)
  2  usage or configuration error (nothing was done)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from monitor.config import Config, load_config, resolve_config_path, secret_values
from monitor.logs import setup_logging
from monitor.yamlfile import ConfigErrors

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
                for error in exc.errors:
                    click.echo(f"error: {error}", err=True)
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
