"""The scale-out commands: ``newsmon poller``, ``newsmon worker``, ``newsmon deliver``,
and the cluster's processes in ``newsmon status`` (see docs/scale-out.md).

Each command is one long-running process against the config's PostgreSQL database;
start as many as the load needs, on any machine. Each holds the single-daemon lock
shared (``runtime/pg_lock.py``), so none starts beside a ``newsmon run``, nor a ``run``
beside them. Exit codes, for scripts and systemd: 0 stopped cleanly (SIGTERM,
Ctrl-C), 1 could not start (a ``newsmon run`` holds the database) or lost the
database for good, 2 config error (including a SQLite ``database:``: these need
PostgreSQL; one machine runs ``newsmon run``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from monitor.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    State,
    config_option,
    fail,
    is_terminal,
    pass_state,
    print_table,
    print_tsv,
)
from monitor.config import Config
from monitor.errors import ConfigError, StorageError

__all__ = ["process_rows", "register", "render_processes"]

log = logging.getLogger(__name__)

# A process whose last beat is older than this many of its beats is not listed.
LIVE_WITHIN_S = 90.0


def _url(config: Config) -> str:
    from monitor.cluster.shared import cluster_url

    try:
        return cluster_url(config)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def _serve(state: State, kind: str, make: Callable[[Config, str], Any]) -> None:
    """Build the process from the config and its PostgreSQL URL (config errors exit 2),
    hold the single-daemon lock shared (exit 1 beside a ``newsmon run``), run it until
    SIGTERM, exit 0 or 1."""
    from monitor.cluster.shared import StopSignal
    from monitor.delivery.deliverer import ChannelError
    from monitor.runtime.lock import DatabaseLocked
    from monitor.runtime.pg_lock import PgDaemonLock

    config = state.config()
    url = _url(config)
    try:
        process = make(config, url)
    except ChannelError as exc:
        fail(str(exc), EXIT_CONFIG)
    try:  # held until exit: cluster processes coexist, a `newsmon run` is refused
        lock = PgDaemonLock.acquire(url, role=kind, exclusive=False)
    except (DatabaseLocked, StorageError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(EXIT_FAILED)

    async def main() -> None:
        with StopSignal() as stop:
            await process.run(stop)

    try:
        asyncio.run(main())
    except (StorageError, OSError) as exc:
        log.error("cannot run: %s", exc)
        sys.exit(EXIT_FAILED)
    finally:
        lock.release()
    sys.exit(EXIT_OK)


@click.command()
@click.option("--lease", type=click.FloatRange(min=1.0), default=90.0, show_default=True,
              help="Seconds a feed's lease lasts: a killed poller's feeds are taken over within"
                   " this; a poll may take at most half of it.")
@config_option
@pass_state
def poller(state: State, lease: float) -> None:
    """Poll feeds and queue their new items, sharing the feeds with other pollers.

    Needs ``database: postgresql://…``. Each feed is leased to one poller at a
    time (fair shares; a dead poller's feeds are taken over within one lease);
    new items are queued for ``newsmon worker`` in the same transaction as
    their "seen" row. Per-host politeness (fetch.per_host requests in flight,
    429/503 pauses) is kept in the database, so it holds across pollers.

    \b
    Examples:
      newsmon poller --config /etc/newsmon/newsmon.yaml
      newsmon poller --lease 30        faster takeover, polls of at most 15 s
      systemctl start newsmon-poller   (deploy/newsmon-poller.service)

    Exit codes: 0 stopped cleanly, 1 database unreachable or a ``newsmon run``
    holds it, 2 config error.
    """
    from monitor.cluster.poller import Poller

    _serve(state, "poller", lambda config, url: Poller(config, url, lease=lease))


@click.command()
@click.option("--beat", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds between heartbeats: a killed worker's task is retried by another"
                   " after three missed beats.")
@config_option
@pass_state
def worker(state: State, beat: float) -> None:
    """Process queued items: extract, analyse, match, and write alerts to the outbox.

    Needs ``database: postgresql://…``. Runs one task at a time (the work is
    CPU-bound): start one worker per core, on as many machines as needed.
    Each item's article, matches and outbox rows are written in one
    transaction; a task of a killed worker is retried, and a retried item
    that was already recorded gets no second alert.

    \b
    Examples:
      newsmon worker --config /etc/newsmon/newsmon.yaml
      systemctl start newsmon-worker@1 newsmon-worker@2   (deploy/newsmon-worker@.service)

    Exit codes: 0 stopped cleanly, 1 database unreachable or a ``newsmon run``
    holds it, 2 config error.
    """
    from monitor.cluster.worker import Worker

    _serve(state, "worker", lambda config, url: Worker(config, url, beat=beat))


@click.command()
@config_option
@pass_state
def deliver(state: State) -> None:
    """Send due alerts from the shared outbox, claimed (run any number of these).

    Needs ``database: postgresql://…``. An alert is claimed before it is sent,
    so no two processes send it; a dead process's claim expires and the alert
    is retried (the one message in flight at a kill may arrive twice, and the
    log says so).

    \b
    Examples:
      newsmon deliver --config /etc/newsmon/newsmon.yaml
      systemctl start newsmon-deliver   (deploy/newsmon-deliver.service)

    Exit codes: 0 stopped cleanly, 1 database unreachable or a ``newsmon run``
    holds it, 2 config error (including a channel URL apprise cannot use).
    """
    from monitor.cluster.deliver import DeliverProcess

    _serve(state, "deliver", DeliverProcess)


def process_rows(config: Config) -> list[dict[str, Any]] | None:
    """The cluster's live processes as dicts (None: the database is SQLite, no cluster).

    Raises StorageError when the database cannot be read.
    """
    from monitor.cluster.shared import cluster_url
    from monitor.storage.leases import ClusterStore, connect_cluster

    try:
        url = cluster_url(config)
    except ConfigError:
        return None
    store = ClusterStore(connect_cluster(url, application="newsmon-status"))
    try:
        exists = store.conn.execute("SELECT to_regclass('cluster_processes')").fetchone()[0]
        rows = store.processes(within=LIVE_WITHIN_S) if exists else []
        leases: dict[str, int] = {}
        if exists:
            for lease in store.leases():
                if lease.holder:
                    leases[lease.holder] = leases.get(lease.holder, 0) + 1
    finally:
        store.close()
    return [{"kind": r.kind, "host": r.host, "pid": r.pid, "id": r.id,
             "started": r.started_at.isoformat(timespec="seconds"),
             "last_beat": r.last_beat.isoformat(timespec="seconds"),
             "beat_age_s": round(r.beat_age, 1), "work_done": r.work_done,
             "feeds": leases.get(r.id, 0) if r.kind == "poller" else None} for r in rows]


def render_processes(rows: list[dict[str, Any]]) -> None:
    """The processes as a table (tab-separated when piped)."""
    click.echo(f"cluster: {len(rows)} live process(es)")
    if not rows:
        return
    columns = ["kind", "host", "pid", "started", "last beat", "work done", "feeds"]
    table = [(r["kind"], r["host"], r["pid"], r["started"], f"{r['beat_age_s']:.0f}s ago",
              r["work_done"], "" if r["feeds"] is None else r["feeds"]) for r in rows]
    if is_terminal(sys.stdout):
        print_table(columns, table)
    else:
        print_tsv(columns, table)


def status_processes(config: Config, as_json: bool) -> dict[str, Any] | None:
    """For ``newsmon status``: print the process table (text), or return it for the JSON."""
    try:
        rows = process_rows(config)
    except StorageError as exc:
        if not as_json:
            click.echo(f"cluster: processes unreadable: {exc}")
        return {"processes_error": str(exc)}
    if rows is None:
        return None
    if not as_json:
        render_processes(rows)
    return {"processes": rows}


def register(cli: click.Group) -> None:
    """Add ``poller``, ``worker`` and ``deliver`` to the ``newsmon`` group."""
    for command in (poller, worker, deliver):
        cli.add_command(command)

