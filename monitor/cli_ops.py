"""Operations commands: ``newsmon status`` and ``newsmon db ...``.

``status`` reads the database only (read-only connection: safe beside a
running daemon) and exits 0 when healthy, 1 when unhealthy or unreadable, 2
on a config error, for monitoring scripts. The health rules are in
``monitor/health.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from monitor.cli_common import EXIT_FAILED, EXIT_OK, State, config_option
from monitor.store import Store, StoreError

pass_state = click.make_pass_decorator(State)


def _open_readonly(state: State) -> Store:
    """The configured database, read-only; exit 1 with a clear message if unusable."""
    path = state.config().database_path()
    if not path.exists():
        click.echo(f"error: no database at {path} (has newsmon run yet?)", err=True)
        sys.exit(EXIT_FAILED)
    try:
        return Store.open_readonly(path)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@config_option
@pass_state
def status(state: State, as_json: bool) -> None:
    """Show the daemon's health from its database; exit 1 when unhealthy.

    \b
    Unhealthy when: no poll cycle finished within 3x the shortest feed
    interval, any alert is dead-lettered, or every feed is failing.
    Exit codes: 0 healthy, 1 unhealthy (or database unreadable), 2 config error.
    """
    from monitor.health import evaluate, render_text

    config = state.config()
    store = _open_readonly(state)
    try:
        report = evaluate(store, config)
    except Exception as exc:  # sqlite errors outside the store's wrappers too
        if as_json:
            click.echo(json.dumps({"healthy": False, "problems": [f"database: {exc}"]}))
        else:
            click.echo(f"newsmon: UNHEALTHY\n  problem: database: {exc}")
        sys.exit(EXIT_FAILED)
    finally:
        store.close()
    click.echo(report.to_json() if as_json else render_text(report))
    sys.exit(EXIT_OK if report.healthy else EXIT_FAILED)


@click.group()
def db() -> None:
    """Database upkeep: backup, maintain."""


@db.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@config_option
@pass_state
def backup(state: State, dest: Path, force: bool) -> None:
    """Copy the database to DEST with SQLite's online backup API.

    Safe while the daemon runs. The copy is written beside DEST, checked with
    PRAGMA integrity_check, then renamed into place.
    """
    if dest.exists() and not force:
        click.echo(f"error: {dest} exists (use --force to replace it)", err=True)
        sys.exit(EXIT_FAILED)
    store = _open_readonly(state)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        store.backup(partial)
        copy = Store.open_readonly(partial)
        try:
            verdict = copy.integrity_check()
        finally:
            copy.close()
        if verdict != "ok":
            raise StoreError(f"the copy failed its integrity check: {verdict}")
        os.replace(partial, dest)
    except (StoreError, OSError) as exc:
        partial.unlink(missing_ok=True)
        click.echo(f"error: backup failed: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        store.close()
    click.echo(f"backed up {store.path} to {dest} ({dest.stat().st_size} bytes)")


@db.command()
@click.option("--vacuum", is_flag=True, help="VACUUM even if little space would be freed.")
@config_option
@pass_state
def maintain(state: State, vacuum: bool) -> None:
    """Prune old article bodies and cycles, optimise (and maybe VACUUM) now.

    The daemon does this every service.maintenance_interval by itself. VACUUM
    holds the write lock while it runs; a running daemon waits for it.
    """
    from monitor.retention import maintain as run_maintenance

    config = state.config()
    try:
        store = Store(config.database_path())
        try:
            report = run_maintenance(store, config.service, idle=True, force_vacuum=vacuum)
        finally:
            store.close()
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(report.summary())


def register(cli: click.Group) -> None:
    """Add ``status`` and ``db`` to the ``newsmon`` group."""
    cli.add_command(status)
    cli.add_command(db)
