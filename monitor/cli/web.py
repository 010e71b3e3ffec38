"""``newsmon web`` (the analyst's workspace) and ``newsmon backtest`` (a rule set
re-run over stored history, compared with what was actually matched).

    newsmon web                                open http://127.0.0.1:8780/
    newsmon backtest --rules edited/ --since 14d
    newsmon backtest --rules edited/ --json | jq '.topics.ceasefire.added'
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from monitor.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    Progress,
    State,
    cell,
    config_option,
    database,
    fail,
    fail_errors,
    pass_state,
)
from monitor.cli.search import since_option
from monitor.records import iso, utcnow
from monitor.yamlfile import ConfigErrors


def register(cli: click.Group) -> None:
    """Add ``newsmon web`` and ``newsmon backtest`` to the main group."""
    cli.add_command(web)
    cli.add_command(backtest)


# --- newsmon web ---------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Beyond loopback, NEWSMON_WEB_TOKEN or"
                   " NEWSMON_WEB_USER + NEWSMON_WEB_PASSWORD must be set.")
@click.option("--port", type=click.IntRange(0, 65535), default=8780, show_default=True,
              help="Port to listen on (0: any free port).")
@config_option
@pass_state
def web(state: State, host: str, port: int) -> None:
    """Serve the analyst's workspace to a browser.

    Overview, stories, articles, search, feeds, channels, the rule playground
    and feedback.

    It reads the database read-only (feedback is its one write) and may run
    beside the daemon. It listens on 127.0.0.1 unless told otherwise, and then
    only with credentials from the environment (see docs/web.md).

    \b
    Examples:
      newsmon web
      NEWSMON_WEB_TOKEN=$(openssl rand -hex 24) newsmon web --host 0.0.0.0

    Exit codes: 0 stopped with Ctrl-C or SIGTERM, 1 could not start (no
    database, port taken), 2 config error or a refused address.
    """
    from monitor.storage import StoreError
    from monitor.web import BindRefused, WebSettings, check_bind, serve
    from monitor.web.security import Credentials

    config = state.config()
    credentials = Credentials.from_env()
    try:
        check_bind(host, credentials)
    except BindRefused as exc:
        fail(str(exc), EXIT_CONFIG)
    if config.database_missing():
        fail(f"no database at {config.database_label()} (has newsmon run yet?)", EXIT_FAILED)

    def ready(url: str) -> None:
        click.echo(f"newsmon web: {url}  (Ctrl-C to stop)", err=True)

    try:
        asyncio.run(serve(config, WebSettings(host=host, port=port, credentials=credentials), ready))
    except KeyboardInterrupt:
        pass
    except StoreError as exc:
        fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_FAILED)
    sys.exit(EXIT_OK)


# --- newsmon backtest ----------------------------------------------------------------------


@dataclass
class TopicDiff:
    """What a rule set would have matched in one topic, against what was matched."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "unchanged": self.unchanged,
                "counts": {"added": len(self.added), "removed": len(self.removed),
                           "unchanged": len(self.unchanged)}}


def compare(articles: Iterable[tuple[dict[str, Any], set[str], set[str]]],
            topics: Iterable[str]) -> dict[str, TopicDiff]:
    """Per topic: (article, would match, did match) → added / removed / unchanged."""
    diffs: dict[str, TopicDiff] = {t: TopicDiff() for t in topics}
    for article, would, did in articles:
        for topic in would | did:
            diff = diffs.setdefault(topic, TopicDiff())
            if topic in would and topic in did:
                diff.unchanged.append(article)
            elif topic in would:
                diff.added.append(article)
            else:
                diff.removed.append(article)
    return diffs


@click.command()
@click.option("--rules", "rules_path", required=True, multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="Rule file or folder to test (repeatable), e.g. an edited copy of config/rules/.")
@since_option("30d")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: per topic added/removed/unchanged.")
@click.option("--unchanged", "show_unchanged", is_flag=True, help="List unchanged articles too.")
@config_option
@pass_state
def backtest(state: State, rules_path: tuple[Path, ...], since: timedelta | None, as_json: bool,
             show_unchanged: bool) -> None:
    """Run a rule set over stored history and compare it with what matched.

    Per topic, what it would have matched against what was matched when the
    articles arrived.

    Added: it would match now and did not then; removed: it matched then and
    would not now. Articles whose body retention has pruned are judged on
    their title and summary (counted in the report). Nothing is written.
    A progress bar runs on stderr when it is a terminal.

    \b
    Examples:
      newsmon backtest --rules config/rules/ --since 7d
      newsmon backtest --rules /tmp/edited-rules/ --json | jq '.topics[].counts'

    Exit codes: 0 done, 1 no database or no stored article in the window,
    2 usage, config or rule error.
    """
    from monitor.models import Article
    from monitor.rules.classifier import Classifier
    from monitor.storage import read_models as views

    config = state.config()
    try:
        classifier = Classifier.from_files(list(rules_path), config.analysis.spacy_model)
    except ConfigErrors as exc:
        fail_errors(exc)
    cutoff = utcnow() - since if since else None
    judged: list[tuple[dict[str, Any], set[str], set[str]]] = []
    pruned = 0
    with database(state, readonly=True) as store:
        total = views.count_articles(store.connection, since=cutoff)
        if not total:
            fail(f"no stored article {'since ' + (iso(cutoff) or '') if cutoff else 'at all'}",
                 EXIT_FAILED)
        batch: list[tuple[dict[str, Any], set[str], int]] = []
        with Progress(total, "backtesting") as progress:
            for row in views.stored_articles(store.connection, since=cutoff):
                pruned += row.body_pruned
                article = Article(title=row.title, summary=row.summary, body=row.body,
                                  text_source=row.text_source, url=row.url,  # type: ignore[arg-type]  # a stored text_source is one of the Literal values
                                  language=row.language, published=row.published)
                # Judged as of when it arrived, so a topic's date scope applies as it did then.
                would = {m.topic for m in classifier.classify(article, now=row.first_seen)}
                batch.append(({"id": row.id, "title": row.title, "url": row.url,
                               "first_seen": iso(row.first_seen)}, would, row.id))
                progress.advance()
                if len(batch) >= 500:
                    judged += _with_actual(store, batch)
                    batch = []
            judged += _with_actual(store, batch)
    diffs = compare(judged, [t.id for t in classifier.topics])
    report = {"since": iso(cutoff) if cutoff else None, "articles": len(judged),
              "bodies_pruned": pruned, "rules": [str(p) for p in rules_path],
              "topics": {t: d.as_json() for t, d in sorted(diffs.items())}}
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_report(report, diffs, show_unchanged)
    sys.exit(EXIT_OK)


def _with_actual(store: Any, batch: list[tuple[dict[str, Any], set[str], int]]
                 ) -> list[tuple[dict[str, Any], set[str], set[str]]]:
    from monitor.storage import read_models as views

    actual = views.matched_topics(store.connection, [b[2] for b in batch])
    return [(article, would, actual.get(article_id, set())) for article, would, article_id in batch]


def _print_report(report: Mapping[str, Any], diffs: Mapping[str, TopicDiff], show_unchanged: bool) -> None:
    since = f" since {report['since'][:10]}" if report["since"] else ""
    click.echo(f"{report['articles']} stored articles{since} re-judged"
               f" ({report['bodies_pruned']} with pruned bodies: title and summary only)")
    for topic, diff in sorted(diffs.items()):
        click.echo(f"\n{topic}: +{len(diff.added)} added, -{len(diff.removed)} removed,"
                   f" {len(diff.unchanged)} unchanged")
        for sign, rows in (("+", diff.added), ("-", diff.removed),
                           ("=", diff.unchanged if show_unchanged else [])):
            for r in rows:
                click.echo(f"  {sign} {cell(r['title']) or '(untitled)'}  {r['url'] or ''}".rstrip())
