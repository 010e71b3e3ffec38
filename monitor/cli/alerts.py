"""``newsmon alerts``: the outbox seen and handled from the command line.

    newsmon alerts                     recent alerts and their state
    newsmon alerts --status dead       only the dead-lettered ones
    newsmon alerts retry 42            re-queue one alert (id or alert key)
    newsmon alerts retry --dead        re-queue every dead-lettered alert
    newsmon alerts test slack          send a test message to a channel

On a terminal the list is a table; piped, it is tab-separated (one header line),
for ``cut`` and ``awk``; ``--json`` gives a JSON array. Nothing printed here
contains a channel URL.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from monitor.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    State,
    config_option,
    database,
    fail,
    is_terminal,
    pass_state,
    print_table,
    print_tsv,
)
from monitor.records import AlertListRow, iso

COLUMNS = ("id", "alert_key", "channel", "topic", "severity", "status", "held", "attempts",
           "created_at", "sent_at", "next_attempt_at", "last_error", "title")
STATUSES = ("pending", "sent", "dead")


def _plain(row: AlertListRow) -> dict[str, Any]:
    """The row as printed: the COLUMNS, timestamps in their stored text form."""
    return {c: iso(v) if isinstance(v, datetime) else v
            for c, v in ((c, getattr(row, c)) for c in COLUMNS)}




@click.group(invoke_without_command=True)
@click.option("--limit", "-n", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="How many alerts, newest first.")
@click.option("--status", type=click.Choice(STATUSES), help="Only alerts in this state.")
@click.option("--channel", help="Only alerts for this channel.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of alert objects.")
@config_option
@click.pass_context
def alerts(ctx: click.Context, limit: int, status: str | None, channel: str | None,
           as_json: bool) -> None:
    """List recent alerts with their delivery state (pending, sent, dead).

    A table on a terminal; tab-separated with one header line when piped.

    \b
    Examples:
      newsmon alerts
      newsmon alerts --status dead --channel newsroom
      newsmon alerts -n 500 | cut -f1,6,13
      newsmon alerts retry --dead
      newsmon alerts test newsroom

    Exit codes: 0 listed, 1 no database (or unreadable), 2 config error.
    """
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.find_object(State)
    assert state is not None
    with database(state) as storage:
        rows = [_plain(r) for r in storage.views.alert_list(limit=limit, status=status,
                                                            channel=channel)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif is_terminal(sys.stdout):
        _print_table(rows)
    else:
        print_tsv(COLUMNS, ([row.get(c) for c in COLUMNS] for row in rows))


def _print_table(rows: list[dict[str, Any]]) -> None:
    shown = ("id", "alert_key", "channel", "topic", "status", "attempts", "created_at",
             "last_error", "title")
    colours = {"sent": "green", "pending": "yellow", "dead": "red"}
    cells = []
    for row in rows:
        values = [row.get(c) for c in shown]
        if row.get("held") and row.get("status") == "pending":
            values[shown.index("status")] = f"held ({row['held']})"
        cells.append(values)
    print_table(shown, cells, styles=[colours.get(row.get("status") or "") for row in rows])
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

    \b
    Examples:
      newsmon alerts retry 42
      newsmon alerts retry --dead

    Exit codes: 0 re-queued (or, with --dead, nothing dead), 1 no such alert
    or no database, 2 usage or config error.
    """
    if bool(ref) == dead:
        raise click.UsageError("give an alert id (or key), or --dead")
    with database(state) as storage:
        count = storage.outbox.retry_dead() if dead else storage.outbox.requeue(ref or "")
    if not count:
        if not dead:
            fail(f"no alert {ref} (see newsmon alerts)", EXIT_FAILED)
        click.echo("nothing to re-queue")
        sys.exit(EXIT_OK)
    click.echo(f"re-queued {count} alert{'s' if count != 1 else ''}")


@alerts.command()
@click.argument("channel")
@config_option
@pass_state
def test(state: State, channel: str) -> None:
    """Send a test message to CHANNEL now (outside the outbox).

    CHANNEL is a channel's name from the config (its URL is never printed).

    \b
    Examples:
      newsmon alerts test newsroom

    Exit codes: 0 sent, 1 the service did not accept it, 2 no such channel
    or config error.
    """
    from monitor.delivery.deliverer import ChannelError, Deliverer

    config = state.config()
    if channel not in {c.name for c in config.channels}:
        names = ", ".join(c.name for c in config.channels) or "none configured"
        fail(f"no channel named {channel} (channels: {names})", EXIT_CONFIG)
    try:
        deliverer = Deliverer([c for c in config.channels if c.name == channel], config.delivery)
    except ChannelError as exc:
        fail(str(exc), EXIT_CONFIG)
    result = deliverer.test(channel)
    if not result.ok:
        fail(f"test message to {channel} failed: {result.error}", EXIT_FAILED)
    click.echo(f"test message sent to {channel}")


def register(cli: click.Group) -> None:
    """Add ``newsmon alerts`` to the group."""
    cli.add_command(alerts)
