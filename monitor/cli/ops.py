"""Operations commands: ``newsmon status`` and ``newsmon db ...``.

``status`` reads the database only (read-only connection: safe beside a
running daemon) and exits 0 when healthy, 1 when unhealthy or unreadable, 2
on a config error, for monitoring scripts. The health rules are in
``monitor/runtime/status.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import click

from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    State,
    config_option,
    database,
    fail,
    pass_state,
)
from monitor.storage import StoreError, open_readonly


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@config_option
@pass_state
def status(state: State, as_json: bool) -> None:
    """Show the daemon's health from its database; exit 1 when unhealthy.

    \b
    Unhealthy when: no poll cycle finished within 3x the shortest feed
    interval, any alert is dead-lettered, every feed is failing, or a channel
    has failed every send for longer than delivery.channel_failing_after.
    Each channel's last success, last failure and its cause, failures in a
    row, pending and dead counts are shown. Reads the database only: safe
    beside a running daemon.

    \b
    Examples:
      newsmon status
      newsmon status --json | jq .problems
      newsmon status --config /etc/newsmon/newsmon.yaml || notify-admin

    Exit codes: 0 healthy, 1 unhealthy (or no readable database), 2 config error.
    """
    from monitor.cli.cluster import status_processes
    from monitor.runtime.status import evaluate, render_text

    config = state.config()
    with database(state, readonly=True) as storage:
        try:
            figures = storage.views.status_figures()
            # Channel health needs the claims schema (v4); an older daemon's file has none.
            channels = storage.outbox.channel_health() if figures.schema_version >= 4 else []
            unrouted = [t for t in (storage.ops.get_meta("unrouted_topics") or "").split(",") if t]
            report = evaluate(figures, config, channels=channels, unrouted=unrouted)
        except Exception as exc:  # sqlite errors outside the store's wrappers too
            click.echo(f"error: database {config.database_label()}: {exc}", err=True)
            if as_json:
                click.echo(json.dumps({"healthy": False, "problems": [f"database: {exc}"]}))
            else:
                click.echo(f"newsmon: UNHEALTHY\n  problem: database: {exc}")
            sys.exit(EXIT_FAILED)
    if as_json:
        # On PostgreSQL, the cluster's live processes too (docs/scale-out.md).
        cluster = status_processes(config, as_json=True)
        click.echo(json.dumps({**report.to_dict(), **(cluster or {})}, indent=2,
                              ensure_ascii=False))
    else:
        click.echo(render_text(report))
        status_processes(config, as_json=False)
    sys.exit(EXIT_OK if report.healthy else EXIT_FAILED)


@click.group()
@config_option
def db() -> None:
    """Database upkeep: backup, maintain.

    \b
    Examples:
      newsmon db backup /var/backups/newsmon.db
      newsmon db maintain --vacuum
    """


@db.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@config_option
@pass_state
def backup(state: State, dest: Path, force: bool) -> None:
    """Copy the database to DEST with SQLite's online backup API.

    Safe while the daemon runs. The copy is written beside DEST, checked with
    PRAGMA integrity_check, then renamed into place.

    \b
    Examples:
      newsmon db backup /var/backups/newsmon.db
      newsmon db backup --force /var/backups/newsmon-$(date +%a).db

    Exit codes: 0 copied, 1 not copied (DEST exists without --force, no
    database, or the copy failed), 2 config error.
    """
    if state.config().is_postgres:  # SQLite's backup API; PostgreSQL has its own tools
        fail(f"newsmon db backup copies a SQLite file; {state.config().database_label()} is"
             " PostgreSQL: back it up with pg_dump (see docs/postgresql.md)", EXIT_FAILED)
    if dest.exists() and not force:
        fail(f"{dest} exists (use --force to replace it)", EXIT_FAILED)
    with database(state, readonly=True) as storage:
        partial = dest.with_name(f".{dest.name}.partial")
        # The copy inherits WAL mode: opening it makes -wal/-shm files beside it, which
        # os.replace would leave behind. It is switched to a plain journal first.
        leftovers = [Path(f"{partial}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
        try:
            partial.unlink(missing_ok=True)
            storage.ops.backup(partial)
            plain = sqlite3.connect(partial)
            try:
                plain.execute("PRAGMA journal_mode=DELETE")
            finally:
                plain.close()
            copy = open_readonly(partial)
            try:
                verdict = copy.ops.integrity_check()
            finally:
                copy.close()
            if verdict != "ok":
                raise StoreError(f"the copy failed its integrity check: {verdict}")
            os.replace(partial, dest)
        except (StoreError, OSError, sqlite3.Error) as exc:
            partial.unlink(missing_ok=True)
            fail(f"backup to {dest} failed: {exc}", EXIT_FAILED)
        finally:
            for leftover in leftovers:
                leftover.unlink(missing_ok=True)
    click.echo(f"backed up {storage.path} to {dest} ({dest.stat().st_size} bytes)")


@db.command()
@click.option("--vacuum", is_flag=True, help="VACUUM even if little space would be freed.")
@config_option
@pass_state
def maintain(state: State, vacuum: bool) -> None:
    """Prune old article bodies and cycles, optimise (and maybe VACUUM) now.

    The daemon does this every service.maintenance_interval by itself. VACUUM
    holds the write lock while it runs; a running daemon waits for it.

    \b
    Examples:
      newsmon db maintain
      newsmon db maintain --vacuum

    Exit codes: 0 done, 1 the database could not be used, 2 config error.
    """
    from monitor.runtime.retention import maintain as run_maintenance

    config = state.config()
    with database(state) as storage:
        report = run_maintenance(storage.ops, config.service, idle=True, force_vacuum=vacuum)
    click.echo(report.summary())


def register(cli: click.Group) -> None:
    """Add ``status`` and ``db`` to the ``newsmon`` group."""
    cli.add_command(status)
    cli.add_command(db)
