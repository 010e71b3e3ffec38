"""``newsmon feeds``: feed health, OPML import/export and feed discovery.

    newsmon feeds [--json]                 every feed's health (a table on a terminal,
                                           tab-separated when piped, or JSON)
    newsmon feeds import FILE.opml|URL     append feeds to the config file
    newsmon feeds export [-o FILE]         the configured feeds as OPML 2.0
    newsmon feeds discover URL [--add]     the feeds a site announces

Exit codes:
  0  done
  1  done, but: a feed is failing (list); some feeds were rejected or could not
     be checked (import); no feed found (discover)
  2  usage or configuration error (missing or invalid file, bad OPML), nothing written
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Progress,
    State,
    cell,
    config_option,
    echo_errors,
    fail,
    is_terminal,
    pass_state,
    print_table,
    print_tsv,
)
from monitor.config import Config
from monitor.ingest.discover import FoundFeed, discover
from monitor.ingest.fetch import Fetcher
from monitor.ingest.opml import OpmlError, OpmlFeed, append_feeds, export_opml, looks_like_opml, parse_opml
from monitor.ingest.parse import FeedParseError, parse_feed
from monitor.logs import public_url
from monitor.models import FetchError
from monitor.records import FeedTableRow, iso
from monitor.runtime.pipeline import Pipeline
from monitor.storage import StoreError, open_readonly
from monitor.storage.read_models import feed_table
from monitor.yamlfile import ConfigErrors

COLUMNS = ("name", "url", "health", "last_success", "failures", "last_error_kind",
           "next_poll", "interval_s", "reason", "items_per_day", "alerts_held_since",
           "last_error")


def register(cli: click.Group) -> None:
    """Add ``newsmon feeds`` and its subcommands to the main group."""
    cli.add_command(feeds)


# --- newsmon feeds -----------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of feed objects.")
@config_option
@click.pass_context
def feeds(ctx: click.Context, as_json: bool) -> None:
    """Feed health: last success, last error, failures, next poll, items a day.

    Reads the daemon's database (read-only; safe beside a running daemon).
    A table on a terminal; tab-separated with one header line when piped.

    \b
    Examples:
      newsmon feeds
      newsmon feeds | cut -f2,3           # url, health
      newsmon feeds --json | jq '.[] | select(.failures > 0) | .url'
      newsmon feeds import subscriptions.opml --check
      newsmon feeds export -o feeds.opml
      newsmon feeds discover https://example.org/

    Exit codes: 0 listed, 1 a feed is in the "failing" state (or the
    database is unreadable), 2 config error.
    """
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.find_object(State)
    assert state is not None
    config = state.config()
    table = [_plain(row) for row in feed_rows(config)]
    if as_json:
        click.echo(json.dumps(table, indent=2, ensure_ascii=False))
    elif is_terminal(sys.stdout):
        _print_rich(table)
    else:
        print_tsv(COLUMNS, ([row[c] for c in COLUMNS] for row in table))
    sys.exit(EXIT_FAILED if any(r["health"] == "failing" for r in table) else EXIT_OK)


def feed_rows(config: Config) -> list[FeedTableRow]:
    """One row per configured feed, with its stored health (blank if never polled)."""
    if config.database_missing():
        return feed_table(config.feeds, {})
    try:
        storage = open_readonly(config.database_target())
        try:
            return storage.views.feed_table(config.feeds)
        finally:
            storage.close()
    except (StoreError, sqlite3.Error) as exc:
        fail(f"database {config.database_label()}: {exc}", EXIT_FAILED)


def _plain(row: FeedTableRow) -> dict[str, Any]:
    """The row as printed: the COLUMNS, timestamps in their stored text form."""
    shown = {c: iso(v) if isinstance(v, datetime) else v
             for c, v in ((c, getattr(row, c)) for c in COLUMNS)}
    if "url" in shown:  # a private feed's token (query, userinfo) is never printed
        shown["url"] = public_url(str(shown["url"]))
    return shown


def _print_rich(rows: Sequence[dict[str, Any]]) -> None:
    from rich.text import Text

    styles = {"ok": "green", "failing": "bold red", "quiet": "yellow", "new": "cyan",
              "disabled": "dim"}
    cells = []
    for row in rows:
        error = row["last_error_kind"] or ""
        if row["alerts_held_since"]:
            error = (error + " churn: alerts held").strip()
        interval = f"{row['interval_s']}s ({row['reason']})" if row["interval_s"] else ""
        cells.append([row["name"] or row["url"],
                      Text(row["health"], style=styles.get(row["health"], "")),
                      row["last_success"], row["failures"], error, row["next_poll"], interval,
                      row["items_per_day"]])
    print_table(("feed", "health", "last success", "fails", "error", "next poll", "interval",
                 "items/day"), cells, title=f"{len(rows)} feeds")


# --- import ------------------------------------------------------------------------------


def _fetcher(config: Config) -> Fetcher:
    return Pipeline.make_fetcher(config)


async def _load_source(source: str, config: Config, allow_private: bool) -> list[OpmlFeed]:
    """The feeds named by an OPML file, an OPML URL, a feed URL or a site URL."""
    if not source.lower().startswith(("http://", "https://")):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {source}: {exc.strerror}")
        return parse_opml(data).feeds
    async with _fetcher(config) as fetcher:
        result = await fetcher.fetch(source, kind="feed", allow_private=allow_private)
        if looks_like_opml(result.content):
            return parse_opml(result.content).feeds
        found = await discover(source, fetcher, allow_private=allow_private)
    return [OpmlFeed(url=f.url, title=f.title) for f in found]


async def _check_feeds(config: Config, wanted: Sequence[OpmlFeed], allow_private: bool,
                       advance: Callable[[OpmlFeed, str | None], None]) -> list[OpmlFeed]:
    """Fetch and parse each feed; keep those that work. ``advance`` reports each one."""
    async with _fetcher(config) as fetcher:

        async def one(feed: OpmlFeed) -> OpmlFeed | None:
            try:
                result = await fetcher.fetch(feed.url, kind="feed", allow_private=allow_private,
                                             max_bytes=config.fetch.max_feed_bytes)
                parsed = await asyncio.to_thread(
                    parse_feed, result.content, url=feed.url, content_type=result.content_type,
                    max_items=1, max_bytes=config.fetch.max_feed_bytes)
            except (FetchError, FeedParseError) as exc:
                advance(feed, f"{exc.kind}: {exc}")
                return None
            advance(feed, None)
            return feed if feed.title else OpmlFeed(feed.url, parsed.title or None, feed.tags)

        checked = await asyncio.gather(*(one(f) for f in wanted))
    return [f for f in checked if f is not None]


@feeds.command("import")
@click.argument("source")
@click.option("--tag", "tags", multiple=True, help="Add this tag to every imported feed.")
@click.option("--check/--no-check", default=False, show_default=True,
              help="Fetch each feed first and import only those that parse.")
@click.option("--dry-run", is_flag=True, help="Show what would be added; write nothing.")
@click.option("--allow-private", is_flag=True,
              help="Let SOURCE (a URL) and the checks reach private addresses.")
@config_option
@pass_state
def import_command(state: State, source: str, tags: tuple[str, ...], check: bool,
                   dry_run: bool, allow_private: bool) -> None:
    """Append the feeds of an OPML file (or URL, or a site's page) to the config.

    SOURCE is an OPML file, an OPML URL, a feed URL, or a site URL (its feeds
    are discovered). The config file is edited in place, keeping its comments;
    feeds already configured are skipped. The new file is validated first:
    on any error nothing is written. With --check, a progress bar runs on a
    terminal; piped, each feed's verdict is one line on stderr.

    \b
    Examples:
      newsmon feeds import subscriptions.opml --dry-run
      newsmon feeds import subscriptions.opml --check --tag imported
      newsmon feeds import https://example.org/        # the site's own feeds

    Exit codes: 0 imported, 1 some feeds were rejected by --check, nothing
    found, or SOURCE could not be fetched, 2 usage or config error (missing
    file, bad OPML, config invalid after the import): nothing written.
    """
    config = state.config()
    if config.source is None:
        fail("no config file to append to")
    assert config.source is not None
    try:
        wanted = asyncio.run(_load_source(source, config, allow_private))
    except OpmlError as exc:
        fail(f"{source}: {exc}")
    except FetchError as exc:
        fail(f"{source}: {exc.kind}: {exc}", EXIT_FAILED)
    if not wanted:
        fail(f"{source}: no feeds found", EXIT_FAILED)
    rejected: list[str] = []
    if check:
        wanted = _run_checks(config, wanted, allow_private, rejected)
    try:
        result = append_feeds(config.source, wanted, extra_tags=tags, dry_run=dry_run)
    except ConfigErrors as exc:
        echo_errors(exc)
        fail("the config would not be valid after the import; nothing was written")
    verb = "would add" if dry_run else "added"
    for url in result.added:
        click.echo(f"{verb}\t{url}")
    for url in result.already:
        click.echo(f"already configured\t{url}")
    click.echo(f"{len(result.added)} {verb}, {len(result.already)} already configured,"
               f" {len(rejected)} rejected" + ("" if dry_run else f" ({config.source})"),
               err=True)
    sys.exit(EXIT_FAILED if rejected else EXIT_OK)


def _run_checks(config: Config, wanted: list[OpmlFeed], allow_private: bool,
                rejected: list[str]) -> list[OpmlFeed]:
    """Check feeds with a progress bar on a terminal (stderr), one plain line each when
    piped: ``ok URL`` or ``rejected URL ERROR``, tab-separated, on stderr."""
    with Progress(len(wanted), "checking feeds") as progress:

        def report(feed: OpmlFeed, error: str | None) -> None:
            if error:
                rejected.append(feed.url)
                progress.echo(f"rejected\t{feed.url}\t{cell(error)}")
            elif not progress.active:
                progress.echo(f"ok\t{feed.url}")
            progress.advance()

        return asyncio.run(_check_feeds(config, wanted, allow_private, report))


# --- export ------------------------------------------------------------------------------


@feeds.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
@config_option
@pass_state
def export_command(state: State, output: str | None) -> None:
    """Write the configured feeds as OPML 2.0 (tags become categories).

    \b
    Examples:
      newsmon feeds export > feeds.opml
      newsmon feeds export -o feeds.opml

    Exit codes: 0 written, 2 config error or OUTPUT cannot be written.
    """
    config = state.config()
    data = export_opml(config.feeds)
    if output:
        try:
            Path(output).write_bytes(data)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}")
        click.echo(f"{len(config.feeds)} feeds written to {output}", err=True)
    else:
        click.echo(data.decode("utf-8"), nl=False)


# --- discover ----------------------------------------------------------------------------


@feeds.command("discover")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the feeds as JSON.")
@click.option("--add", is_flag=True, help="Append the feeds found to the config file.")
@click.option("--guess/--no-guess", default=True, show_default=True,
              help="When the page announces no feed, try /feed, /rss.xml, /atom.xml...")
@click.option("--allow-private", is_flag=True, help="Let URL reach a private address.")
@config_option
@pass_state
def discover_command(state: State, url: str, as_json: bool, add: bool, guess: bool,
                     allow_private: bool) -> None:
    """Find the feeds of a site from its page (<link rel="alternate" ...>).

    A table on a terminal; piped, one feed a line: URL, kind, title,
    tab-separated.

    \b
    Examples:
      newsmon feeds discover https://example.org/
      newsmon feeds discover https://example.org/ --json
      newsmon feeds discover https://example.org/ --add

    Exit codes: 0 feeds found, 1 none found or the page could not be
    fetched, 2 usage or config error.
    """
    config = state.config()
    if not url.lower().startswith(("http://", "https://")):
        fail(f"{url}: not an http(s) URL")
    if add and config.source is None:
        fail("--add needs a config file to append to (give --config)")

    async def find() -> list[FoundFeed]:
        async with _fetcher(config) as fetcher:
            return await discover(url, fetcher, allow_private=allow_private, guess=guess)

    try:
        found = asyncio.run(find())
    except FetchError as exc:
        fail(f"{url}: {exc.kind}: {exc}", EXIT_FAILED)
    if as_json:
        click.echo(json.dumps([{"url": f.url, "title": f.title, "kind": f.kind,
                                "source": f.source} for f in found], indent=2,
                              ensure_ascii=False))
    elif is_terminal(sys.stdout) and found:

        print_table(("url", "kind", "title"), [(f.url, f.kind, f.title) for f in found],
                    title=f"{len(found)} feeds at {url}")
    else:
        for f in found:
            click.echo(f"{f.url}\t{f.kind}\t{cell(f.title)}")
    if not found:
        fail(f"{url}: no feed found", EXIT_FAILED)
    if add and config.source is not None:
        try:
            result = append_feeds(config.source, [OpmlFeed(f.url, f.title) for f in found])
        except ConfigErrors as exc:
            echo_errors(exc)
            fail("the config would not be valid; nothing was written")
        click.echo(f"{len(result.added)} added, {len(result.already)} already configured",
                   err=True)
