"""``newsmon alerts``: the outbox seen and handled from the command line.

    newsmon alerts                     recent alerts and their state
    newsmon alerts --status dead       only the dead-lettered ones
    newsmon alerts retry 42            re-queue one alert (id or alert key)
    newsmon alerts retry --dead        re-queue every dead-lettered alert
    newsmon alerts test slack          send a test message to a channel

On a terminal the list is a table; piped, it is tab-separated (one header line),
for ``cut`` and ``awk``. Nothing printed here contains a channel URL.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from monitor.cli_common import EXIT_CONFIG, EXIT_FAILED, State, config_option, pass_state

COLUMNS = ("id", "alert_key", "channel", "topic", "severity", "status", "held", "attempts",
           "created_at", "sent_at", "next_attempt_at", "last_error", "title")
STATUSES = ("pending", "sent", "dead")


def _store(state: State) -> Any:
    from monitor.store import Store, StoreError

    config = state.config()
    try:
        return Store(config.database_path())
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


def _cell(value: Any) -> str:
    """One table cell: no tabs or newlines (they would break the TSV)."""
    return " ".join(str(value).split()) if value is not None else ""


@click.group(invoke_without_command=True)
@click.option("--limit", "-n", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="How many alerts, newest first.")
@click.option("--status", type=click.Choice(STATUSES), help="Only alerts in this state.")
@click.option("--channel", help="Only alerts for this channel.")
@config_option
@click.pass_context
def alerts(ctx: click.Context, limit: int, status: str | None, channel: str | None) -> None:
    """List recent alerts with their delivery state (pending, sent, dead)."""
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.find_object(State)
    assert state is not None
    store = _store(state)
    try:
        rows = store.list_alerts(limit=limit, status=status, channel=channel)
    finally:
        store.close()
    if sys.stdout.isatty():
        _print_table(rows)
    else:
        click.echo("\t".join(COLUMNS))
        for row in rows:
            click.echo("\t".join(_cell(row.get(c)) for c in COLUMNS))


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    shown = ("id", "alert_key", "channel", "topic", "status", "attempts", "created_at",
             "last_error", "title")
    for column in shown:
        table.add_column(column, overflow="fold", max_width=40 if column == "title" else None)
    colours = {"sent": "green", "pending": "yellow", "dead": "red"}
    for row in rows:
        cells = [_cell(row.get(c)) for c in shown]
        status = row.get("status") or ""
        if row.get("held") and status == "pending":
            cells[shown.index("status")] = f"held ({row['held']})"
        table.add_row(*cells, style=colours.get(status))
    Console().print(table)
    if not rows:
        click.echo("no alerts yet")


@alerts.command()
@click.argument("ref", required=False)
@click.option("--dead", is_flag=True, help="Re-queue every dead-lettered alert.")
@config_option
@pass_state
def retry(state: State, ref: str | None, dead: bool) -> None:
    """Re-queue an alert (by id or alert key), or all dead ones with --dead.

    The alert is sent again at the next delivery run (within delivery.interval).
    """
    if bool(ref) == dead:
        raise click.UsageError("give an alert id (or key), or --dead")
    store = _store(state)
    try:
        count = store.retry_dead() if dead else store.requeue(ref or "")
    finally:
        store.close()
    if not count:
        click.echo("nothing to re-queue" if dead else f"error: no alert {ref}", err=not dead)
        sys.exit(0 if dead else EXIT_FAILED)
    click.echo(f"re-queued {count} alert{'s' if count != 1 else ''}")


@alerts.command()
@click.argument("channel")
@config_option
@pass_state
def test(state: State, channel: str) -> None:
    """Send a test message to CHANNEL now (outside the outbox)."""
    from monitor.alert import ChannelError, Deliverer

    config = state.config()
    if channel not in {c.name for c in config.channels}:
        names = ", ".join(c.name for c in config.channels) or "none configured"
        click.echo(f"error: no channel named {channel} (channels: {names})", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        deliverer = Deliverer([c for c in config.channels if c.name == channel], config.delivery)
    except ChannelError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    result = deliverer.test(channel)
    if not result.ok:
        click.echo(f"error: test message to {channel} failed: {result.error}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"test message sent to {channel}")


def register(cli: click.Group) -> None:
    """Add ``newsmon alerts`` to the group."""
    cli.add_command(alerts)
