"""The ``newsmon`` command line.

Exit codes, for scripts:
  0  success
  1  the command ran but something failed (a feed, a delivery, an unhealthy state)
  2  usage or configuration error (nothing was done)
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Literal

import click

from monitor.cli import alerts as cli_alerts
from monitor.cli import cluster as cli_cluster
from monitor.cli import feedback as cli_feedback
from monitor.cli import feeds as cli_feeds
from monitor.cli import ops as cli_ops
from monitor.cli import rules as cli_rules
from monitor.cli import search as cli_search
from monitor.cli import stories as cli_stories
from monitor.cli import web as cli_web
from monitor.cli.common import (
    CONFIG_HELP,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    NewsmonGroup,
    State,
    cell,
    config_option,
    fail,
    fail_errors,
    pass_state,
)
from monitor.config import Config

if TYPE_CHECKING:
    from monitor.analysis.analyser import Analyser
from monitor.yamlfile import ConfigErrors

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "cli", "main"]


@click.group(cls=NewsmonGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Log level (default: the config's service.log_level, info).")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines as text, or one JSON object a line for log shippers.")
@click.version_option(package_name="newsmon")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str | None,
        log_format: str | None) -> None:
    """newsmon: watch news feeds, catch the stories that matter, alert on them.

    \b
    Quick start:
      newsmon check              validate config/newsmon.yaml and its rules
      newsmon once               poll every feed once, deliver alerts, exit
      newsmon run                run as a daemon (systemd: deploy/newsmon.service)
      newsmon test-rule --text "Kremlin rejects peace talks"   see why a text matches

    \b
    Every command has its own --help with examples, and takes --config before
    or after its name. Lists are tables on a terminal and tab-separated when
    piped; errors are one "error:" line on stderr.

    Exit codes: 0 ok, 1 something failed, 2 usage or config error.
    """
    ctx.obj = State(config_path, log_level, log_format)


@cli.command()
@click.option("--delivery-only", is_flag=True,
              help="A helper that only delivers alerts (no polling), beside a daemon or not.")
@click.option("--poll-only", is_flag=True,
              help="A helper that only polls feeds and queues alerts (no delivery).")
@click.option("--init", "init", is_flag=True,
              help="Accept an empty database file as a new database (refused by default:"
                   " a truncated database would make every item alert again).")
@config_option
@pass_state
def run(state: State, delivery_only: bool, poll_only: bool, init: bool) -> None:
    """Run the daemon: poll every feed on its schedule and deliver alerts.

    Stops cleanly on SIGTERM or Ctrl-C. Without any channel in the config,
    alerts are stored and written to the log. One daemon per database: a
    second ``run`` refuses to start and names the process that holds it
    (``<database>.lock``; on PostgreSQL an advisory lock, which a running cluster
    of poller/worker/deliver processes also holds). Helpers (--delivery-only,
    --poll-only) take no lock
    and share the outbox through its claims, so no alert is sent twice.

    \b
    Examples:
      newsmon run
      newsmon --log-format json run --config /etc/newsmon/newsmon.yaml
      newsmon run --delivery-only

    Exit codes: 0 stopped cleanly, 1 could not start (database held by another
    run, database unusable, HTTP port), 2 config error.
    """
    from monitor.delivery.deliverer import ChannelError
    from monitor.runtime.daemon import Daemon

    if delivery_only and poll_only:
        raise click.UsageError("--delivery-only and --poll-only exclude each other")
    role: Literal["full", "delivery", "poll"] = (
        "delivery" if delivery_only else "poll" if poll_only else "full")
    config = state.config()
    try:
        code = asyncio.run(Daemon(config, role=role, init=init).run())
    except ChannelError as exc:
        fail(str(exc), EXIT_CONFIG)
    sys.exit(code)


@cli.command()
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes for extraction and analysis (0: in this process).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as one JSON object (feed failures included).")
@config_option
@pass_state
def once(state: State, workers: int | None, as_json: bool) -> None:
    """Poll every feed once, process new items, deliver pending alerts, exit.

    For cron and for tests. The summary goes to stdout; each failed feed or
    delivery is one line on stderr.

    \b
    Examples:
      newsmon once
      newsmon once --workers 0 --json | jq .failed_feeds

    Exit codes: 0 every feed and delivery succeeded, 1 a feed or a delivery
    failed (or the database is unusable), 2 config error.
    """
    from monitor.delivery.deliverer import ChannelError
    from monitor.runtime.assembly import run_once
    from monitor.storage import StoreError

    config = state.config()
    try:
        report, delivery = asyncio.run(run_once(config, workers=workers))
    except ChannelError as exc:
        fail(str(exc), EXIT_CONFIG)
    except ConfigErrors as exc:
        fail_errors(exc)
    except StoreError as exc:
        fail(str(exc), EXIT_FAILED)
    new = sum(o.new_items for o in report.outcomes)
    matches = sum(o.matches for o in report.outcomes)
    if as_json:
        click.echo(json.dumps({
            "feeds": len(report.outcomes), "feeds_failed": len(report.failed),
            "new_items": new, "matches": matches, "alerts_sent": delivery.sent,
            "alerts_failed": delivery.failed,
            "failed_feeds": [{"feed": o.feed, "error_kind": o.error_kind, "error": o.error}
                             for o in report.failed],
            "delivery_errors": list(delivery.errors),
        }, indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"{len(report.outcomes)} feeds polled ({len(report.failed)} failed), {new} new"
            f" items, {matches} matches; alerts sent {delivery.sent}, failed {delivery.failed}"
        )
    # Details under the summary, indented (log parsers in tests/test_service_logs.py
    # rely on the two-space indent to tell them from log lines).
    for outcome in report.failed:
        click.echo(f"  feed {outcome.feed}: {outcome.error_kind}: {cell(outcome.error)}",
                   err=True)
    for delivery_error in delivery.errors:
        click.echo(f"  {cell(delivery_error)}", err=True)
    sys.exit(EXIT_FAILED if report.failed or delivery.failed else EXIT_OK)


@cli.command()
@config_option
@pass_state
def check(state: State) -> None:
    """Validate the config, every rule file, channel URL and rule example.

    Every error names the file, the line and the key. Secrets are never shown
    (channel URLs are printed masked).

    \b
    Examples:
      newsmon check
      newsmon check --config /etc/newsmon/newsmon.yaml

    Exit codes: 0 every check passed, 2 a problem was found (each is one
    "error:" line on stderr).
    """
    from monitor.delivery.deliverer import ChannelError, Deliverer, mask_channel_url
    from monitor.delivery.routing import routing_problems, unrouted_topics
    from monitor.rules.classifier import Classifier
    from monitor.rules.ruleset import load_rules

    config = state.config()
    problems = 0
    click.echo(f"config {config.source}: ok")
    click.echo(f"  database: {config.database_label()}")
    click.echo(f"  feeds: {len(config.feeds)} ({sum(f.enabled for f in config.feeds)} enabled)")
    try:
        Deliverer(config.channels, config.delivery)
        for channel in config.channels:
            topics = ", ".join(channel.topics) if channel.topics else "all topics"
            click.echo(f"  channel {channel.name}: {mask_channel_url(channel.url)} ({topics})")
        if not config.channels:
            click.echo("  channels: none (alerts are stored and written to the log)")
    except ChannelError as exc:
        click.echo(f"error: {exc}", err=True)
        problems += 1
    files = config.rule_files()
    try:
        ruleset = load_rules(files)
    except ConfigErrors as exc:
        fail_errors(exc)
    click.echo(f"  rules: {len(files)} files, {len(ruleset.topics)} topics:"
               f" {', '.join(t.id for t in ruleset.topics)}")
    if len(ruleset.leaves) > LARGE_RULESET_TERMS:
        # Every worker process compiles its own copy (issue 16, row 11: 100,000 terms
        # peaked at 1,948 MB for the process tree, over the unit's MemoryMax=1G).
        click.echo(f"  warning: {len(ruleset.leaves)} rule terms: each of the"
                   f" {config.analysis.workers or 'one-per-core'} worker processes compiles its"
                   " own copy (about 8 MB per 1,000 terms per process, see docs/operations.md);"
                   " use fewer workers (analysis.workers) or fewer terms under MemoryMax=")
    # Nothing routed into the void: every routing name must exist (file:line).
    routing = routing_problems(ruleset.topics, config.channels, config.source)
    for error in routing:
        click.echo(f"error: {error}", err=True)
    problems += len(routing)
    for topic in unrouted_topics(ruleset.topics, config.channels):
        click.echo(f"  warning: topic {topic} routes to no channel (channels' topics: and"
                   " min_severity): its matches would be stored, never alerted")
    classifier = Classifier(ruleset, _analyser(config))
    failures = classifier.check_examples()
    for failure in failures:
        click.echo(f"error: {failure}", err=True)
    problems += len(failures)
    if problems:
        click.echo(f"{problems} problem(s) found", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo("all checks passed")


LARGE_RULESET_TERMS = 20_000  # rule terms above which `check` warns about memory


def _analyser(config: Config) -> Analyser:
    from monitor.analysis.analyser import Analyser

    return Analyser(config.analysis.spacy_model)


# Commands that live beside their own stage, added to the group here.
for _module in (cli_rules, cli_ops, cli_alerts, cli_feeds):
    _module.register(cli)
cli_search.register(cli)  # newsmon search
cli_web.register(cli)  # newsmon web, newsmon backtest
cli_stories.register(cli)  # newsmon stories, newsmon cluster
cli_feedback.register(cli)  # newsmon feedback, newsmon labels
cli_cluster.register(cli)  # newsmon poller, newsmon worker, newsmon deliver (scale-out)


def main() -> None:
    cli(prog_name="newsmon")


if __name__ == "__main__":  # pragma: no cover
    main()
