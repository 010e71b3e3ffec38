"""``newsmon search``: full-text search over stored articles (the web's index).

    newsmon search ceasefire
    newsmon search '"peace talks" -rumour' --topic ceasefire --since 7d
    newsmon search kyiv --json | jq '.hits[].url'

A table on a terminal, tab-separated when piped, ``--json`` for scripts.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import click

from monitor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    State,
    config_option,
    database,
    is_terminal,
    pass_state,
    print_table,
    print_tsv,
)
from monitor.config import parse_duration
from monitor.records import iso, utcnow

COLUMNS = ("id", "first_seen", "topics", "title", "url", "snippet")


def register(cli: click.Group) -> None:
    """Add ``newsmon search`` to the main group."""
    cli.add_command(search)


def since_option(default: str | None) -> Any:
    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
        if value is None:
            return None
        try:
            return timedelta(seconds=parse_duration(value))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option("--since", default=default, callback=convert, show_default=bool(default),
                        help="Only articles first seen within this long (e.g. 7d, 12h, 4w).")


@click.command()
@click.argument("query")
@click.option("--topic", "-t", default=None, help="Only articles that matched this topic.")
@click.option("--feed", default=None, help="Only articles from this feed (name or URL).")
@since_option(None)
@click.option("--matched", "matched_only", is_flag=True, help="Only articles that matched a topic.")
@click.option("--limit", "-n", type=click.IntRange(1, 200), default=20, show_default=True,
              help="Results per page.")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True, help="Which page.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: total, page, hits.")
@config_option
@pass_state
def search(state: State, query: str, topic: str | None, feed: str | None, since: timedelta | None,
           matched_only: bool, limit: int, page: int, as_json: bool) -> None:
    """Search the titles, summaries and bodies of stored articles, best match first.

    QUERY is words (all required); "a phrase" in quotes, -word to exclude,
    word* for a prefix, a OR b for either. Anything else is taken as text:
    a stray quote or AND never makes an error.

    \b
    Examples:
      newsmon search ceasefire
      newsmon search '"peace talks" -rumour' --topic ceasefire --since 7d
      newsmon search kyiv --json | jq -r '.hits[].url'

    Exit codes: 0 something was found, 1 nothing found (or no database),
    2 usage or config error.
    """
    from monitor.storage.search import SearchFilters, SearchRepository, strip_marks

    filters = SearchFilters(topic=topic, feed=feed, matched_only=matched_only,
                            since=utcnow() - since if since else None)
    with database(state, readonly=True) as store:
        result = SearchRepository(store.connection).search(query, filters, page=page, per_page=limit)
    rows = [{"id": h.article_id, "first_seen": iso(h.first_seen), "topics": list(h.topics),
             "title": strip_marks(h.title), "url": h.url, "snippet": strip_marks(h.snippet),
             "rank": h.rank} for h in result.hits]
    if as_json:
        click.echo(json.dumps({"query": query, "fts": result.fts, "total": result.total,
                               "total_capped": result.total_capped, "ranked_within": result.ranked_within,
                               "page": result.page, "pages": result.pages, "hits": rows},
                              indent=2, ensure_ascii=False))
    elif is_terminal(sys.stdout):
        from rich.text import Text

        def marked(text: str) -> Text:
            # Highlights in bold; the text itself is never read as markup.
            out = Text()
            for n, part in enumerate(text.replace("\x03", "\x02").split("\x02")):
                out.append(part, style="bold yellow" if n % 2 else None)
            return out

        print_table(("id", "first seen", "topics", "title", "snippet"),
                    [(h.article_id, (iso(h.first_seen) or "")[:16],
                      ", ".join(h.topics), marked(h.title), marked(h.snippet[:200]))
                     for h in result.hits],
                    title=f"{result.total_text} results (page {result.page} of {result.pages})"
                          + (f", ranked among the newest {result.ranked_within:,}"
                             if result.ranked_within else ""))
    else:
        print_tsv(COLUMNS, [(h.article_id, iso(h.first_seen), ",".join(h.topics), strip_marks(h.title),
                             h.url, strip_marks(h.snippet)) for h in result.hits])
    sys.exit(EXIT_OK if result.total else EXIT_FAILED)
