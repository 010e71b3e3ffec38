"""``newsmon feedback`` and ``newsmon labels``: the analyst's verdicts, recorded and exported.

    newsmon feedback 42 relevant                      alert 42 was right
    newsmon feedback article:17 irrelevant --topic aid --note "weapons destroyed, not aid"
    newsmon labels                                    how many verdicts, per topic
    newsmon labels export -o mine.jsonl && newsmon eval -i mine.jsonl

Verdicts go to the ``feedback`` table the web workspace also writes
(``monitor/storage/feedback.py``); the export is labelled JSON lines in the format
of ``../shared/eval/dev.jsonl``, for ``newsmon eval`` and ``newsmon train``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    State,
    config_option,
    database,
    fail,
    fail_errors,
    pass_state,
)
from monitor.yamlfile import ConfigErrors

if TYPE_CHECKING:
    from monitor.storage.feedback import FeedbackRepository, JudgedArticle

# What the analyst types → what is stored (the web's verdict names).
VERDICT_WORDS = {"relevant": "relevant", "irrelevant": "not_relevant"}


def register(cli: click.Group) -> None:
    """Add ``newsmon feedback`` and ``newsmon labels`` (with ``export``) to the main group."""
    cli.add_command(feedback)
    cli.add_command(labels)


def _pack_topics(state: State) -> list[str]:
    """The ids of the configured rule pack's topics; exit 2 on a rule error."""
    from monitor.rules.ruleset import load_rules

    try:
        return [t.id for t in load_rules(state.config().rule_files()).topics]
    except ConfigErrors as exc:
        fail_errors(exc)


@contextmanager
def _feedback_store(state: State) -> Iterator[FeedbackRepository]:
    """The configured database's feedback; exit 1 naming it when missing or unusable."""
    from monitor.storage.feedback import FeedbackRepository

    with database(state) as store:
        yield FeedbackRepository(store.connection)


@click.command()
@click.argument("ref", metavar="ALERT_OR_ARTICLE")
@click.argument("verdict", type=click.Choice(sorted(VERDICT_WORDS)))
@click.option("--topic", "-t", default=None,
              help="The topic judged (default: the alert's topic; for an article, the whole article).")
@click.option("--note", default=None, help="Why, in a few words (kept with the verdict).")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded verdict as one JSON object.")
@config_option
@pass_state
def feedback(state: State, ref: str, verdict: str, topic: str | None, note: str | None,
             as_json: bool) -> None:
    """Record whether an alert or an article was relevant, for eval and train.

    ALERT_OR_ARTICLE is an alert id or alert key (as ``newsmon alerts`` lists
    them) or ``article:ID`` (the id in the web workspace's /article/ID). An
    alert's verdict is on its topic; an article's on --topic, or without it on
    the whole article ("irrelevant": no topic applies; "relevant": the topics
    it matched are right). The newest verdict on an article and topic counts;
    ``newsmon labels export`` turns them into labelled articles.

    \b
    Examples:
      newsmon feedback 42 relevant
      newsmon feedback a17-aid-slack irrelevant --note "weapons destroyed, not aid"
      newsmon feedback article:17 relevant --topic ceasefire
      newsmon labels export -o mine.jsonl && newsmon eval -i mine.jsonl

    Exit codes: 0 recorded; 1 no database, or it is unusable; 2 unknown alert,
    article or topic, or a usage or config error.
    """
    topics = _pack_topics(state)
    if topic is not None and topic not in topics:
        fail(f"unknown topic {topic!r}: the rule pack has {', '.join(topics) or 'no topics'}")
    with _feedback_store(state) as repo:
        target = repo.target(ref)
        if target is None:
            fail(f"no alert or article {ref!r} (an alert id or key from 'newsmon alerts',"
                 " or article:ID)")
        if target.article_id is None:
            fail(f"alert {ref} is a daemon notice, about no article")
        if target.alert_id is not None:
            if topic is not None and topic != target.topic:
                fail(f"alert {ref} is about {target.topic}, not {topic}: judge the article"
                     f" instead (article:{target.article_id} --topic {topic})")
            topic = target.topic
        feedback_id = repo.add(target.article_id, VERDICT_WORDS[verdict],  # type: ignore[arg-type]  # the Choice keys map to Verdicts
                               topic=topic, alert_id=target.alert_id, note=note, source="cli")
    if as_json:
        click.echo(json.dumps({"id": feedback_id, "article_id": target.article_id,
                               "alert_id": target.alert_id, "topic": topic,
                               "verdict": VERDICT_WORDS[verdict], "note": note}))
    else:
        about = f"topic {topic}" if topic else "the whole article"
        alert = f", alert {target.alert_id}" if target.alert_id is not None else ""
        click.echo(f"recorded: article:{target.article_id} {verdict} for {about}{alert}")
    sys.exit(EXIT_OK)


def _record(article: JudgedArticle) -> dict[str, Any]:
    """One line of the export, in the format of ../shared/eval/dev.jsonl."""
    from monitor.storage.feedback import ARTICLE_PREFIX

    return {"id": f"{ARTICLE_PREFIX}{article.article_id}", "title": article.title,
            "text": article.text, "source": article.source, "date": article.published,
            "url": article.url, "labels": {t: int(v) for t, v in sorted(article.labels.items())}}


def _judged(state: State) -> tuple[list[str], list[JudgedArticle]]:
    topics = _pack_topics(state)
    with _feedback_store(state) as repo:
        return topics, repo.judged(topics)


@click.group(invoke_without_command=True)
@config_option
@click.pass_context
def labels(ctx: click.Context) -> None:
    """Count the labels your feedback gives, per topic (export them: labels export).

    Each row: a topic, how many judged articles are relevant to it and how
    many are not. A topic nobody judged shows 0 and 0 (``newsmon eval``
    reports it as "no labels").

    \b
    Examples:
      newsmon labels
      newsmon labels export -o mine.jsonl && newsmon eval -i mine.jsonl

    Exit codes: 0 counted; 1 no database, or it is unusable; 2 usage or config error.
    """
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.find_object(State)
    if state is None:
        fail("internal: no CLI state")
    topics, judged = _judged(state)
    extra = sorted({t for a in judged for t in a.labels} - set(topics))  # topics since removed
    click.echo(f"{'topic':<16} {'relevant':>8} {'not':>6}")
    for topic in [*topics, *extra]:
        yes = sum(a.labels.get(topic) is True for a in judged)
        no = sum(a.labels.get(topic) is False for a in judged)
        click.echo(f"{topic:<16} {yes:8d} {no:6d}")
    click.echo(f"{len(judged)} judged articles")


@labels.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON lines here (default: standard output).")
@config_option
@pass_state
def export(state: State, output: Path | None) -> None:
    """Write the judged articles as labelled JSON lines, for eval and train.

    One line per judged article, in the format of ../shared/eval/dev.jsonl:
    id (article:ID), title, text, source, date, url and labels {topic: 0/1};
    a topic nobody judged on the article is left out of its labels. The
    count goes to stderr.

    \b
    Examples:
      newsmon labels export -o mine.jsonl
      newsmon labels export -o mine.jsonl && newsmon eval -i mine.jsonl
      newsmon train -i ../shared/eval/train.jsonl -i mine.jsonl

    Exit codes: 0 written (even none); 1 no database, or it is unusable, or
    OUTPUT cannot be written; 2 usage or config error.
    """
    _topics, judged = _judged(state)
    lines = "".join(json.dumps(_record(a), ensure_ascii=False) + "\n" for a in judged)
    if output is None:
        click.echo(lines, nl=False)
    else:
        try:
            output.write_text(lines, encoding="utf-8")
        except OSError as exc:
            fail(f"{output}: {exc.strerror or exc}", EXIT_FAILED)
    where = f" to {output}" if output is not None else ""
    click.echo(f"{len(judged)} judged articles written{where}", err=True)
