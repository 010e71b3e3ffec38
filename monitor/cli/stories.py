"""``newsmon stories``, ``newsmon stories show ID`` and the offline ``newsmon cluster``.

    newsmon stories --since 24h --topic ceasefire
    newsmon stories show 42
    newsmon cluster --input articles.jsonl --output out.jsonl --eval

A table on a terminal, tab-separated when piped, ``--json`` for scripts.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
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
    is_terminal,
    pass_state,
    print_table,
    print_tsv,
)
from monitor.config import parse_duration
from monitor.records import StoryListRow, StoryMemberRow, iso, utcnow

if TYPE_CHECKING:
    from monitor.storage.stories import StoryRepository

EXIT_USAGE = 2
LIST_COLUMNS = ("story", "size", "outlets", "topics", "first_seen", "last_seen", "label")
MEMBER_COLUMNS = ("seen", "source", "topics", "near_dup_of", "similarity", "headline", "url")


def register(cli: click.Group) -> None:
    """Add ``newsmon stories`` (with ``show``) and ``newsmon cluster`` to the main group."""
    cli.add_command(stories)
    cli.add_command(cluster)


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _with_repository(state: State, read: Any) -> Any:
    from monitor.storage import StoreError
    from monitor.storage.stories import StoryRepository

    with database(state, readonly=True) as store:
        try:
            return read(StoryRepository(store.connection))
        except StoreError as exc:
            fail(f"{exc} (a database from before stories: run the daemon once to upgrade it)",
                 EXIT_FAILED)


def _story_json(row: StoryListRow) -> dict[str, Any]:
    return {"id": row.story_id, "label": row.label, "size": row.size, "outlets": row.outlets,
            "topics": list(row.topics), "first_seen": iso(row.first_seen), "last_seen": iso(row.last_seen)}


def _member_json(row: StoryMemberRow) -> dict[str, Any]:
    return {"article": row.article_key, "seen": iso(row.event_time), "source": row.source,
            "headline": row.headline, "url": row.url, "topics": list(row.topics),
            "near_dup_of": row.near_dup_of, "similarity": row.similarity}


@click.group(invoke_without_command=True)
@click.option("--topic", "-t", default=None, help="Only stories with an article that matched this topic.")
@click.option("--since", default="24h", show_default=True, callback=_since,
              help="Only stories last seen within this long (e.g. 24h, 7d).")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of stories.")
@config_option
@click.pass_context
def stories(ctx: click.Context, topic: str | None, since: timedelta | None, limit: int,
            as_json: bool, **_config: Any) -> None:
    """List stories (articles about one event), newest first.

    Each row: the story's label, size, outlets, topics, first and last seen.

    \b
    Examples:
      newsmon stories
      newsmon stories --since 7d --topic ceasefire
      newsmon stories --json | jq '.[] | select(.outlets > 3)'
      newsmon stories show 42

    Exit codes: 0 stories listed, 1 none (or no database), 2 usage or config error.
    """
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.find_object(State)
    if state is None:
        fail("internal: no CLI state", EXIT_USAGE)
    cutoff = utcnow() - since if since else None
    rows: list[StoryListRow] = _with_repository(
        state, lambda repo: repo.list_stories(since=cutoff, topic=topic, limit=limit))
    if as_json:
        click.echo(json.dumps([_story_json(r) for r in rows], indent=2, ensure_ascii=False))
    elif is_terminal(sys.stdout):
        print_table(("id", "size", "outlets", "topics", "first seen", "last seen", "label"),
                    [(r.story_id, r.size, r.outlets, ", ".join(r.topics), iso(r.first_seen)[:16],  # type: ignore[index]  # first_seen is always set on a stored story
                      iso(r.last_seen)[:16], r.label) for r in rows],  # type: ignore[index]  # last_seen is always set on a stored story
                    title=f"{len(rows)} stories")
    else:
        print_tsv(LIST_COLUMNS, [(r.story_id, r.size, r.outlets, ",".join(r.topics), iso(r.first_seen),
                                  iso(r.last_seen), r.label) for r in rows])
    sys.exit(EXIT_OK if rows else EXIT_FAILED)


@stories.command("show")
@click.argument("story_id")
@click.option("--json", "as_json", is_flag=True, help="The story and its articles as one JSON object.")
@config_option
@pass_state
def show(state: State, story_id: str, as_json: bool) -> None:
    """Show one story's articles, oldest first (outlet, topics, which are copies).

    \b
    Examples:
      newsmon stories show 42
      newsmon stories show 42 --json | jq -r '.articles[].url'

    Exit codes: 0 shown, 1 no such story (or no database), 2 usage or config error.
    """
    def read(repo: StoryRepository) -> tuple[Any, list[StoryMemberRow]]:
        return repo.story(story_id), repo.story_members(story_id)

    story, members = _with_repository(state, read)
    if story is None:
        fail(f"no story {story_id!r} (see newsmon stories)", EXIT_FAILED)
    if as_json:
        click.echo(json.dumps({"id": story.story_id, "label": story.label, "outlets": list(story.outlets),
                               "first_seen": iso(story.first_seen), "last_seen": iso(story.last_seen),
                               "articles": [_member_json(m) for m in members]}, indent=2, ensure_ascii=False))
    elif is_terminal(sys.stdout):
        print_table(("seen", "source", "topics", "copy of", "similarity", "headline"),
                    [(iso(m.event_time)[:16], m.source, ", ".join(m.topics), m.near_dup_of or "",  # type: ignore[index]  # event_time is always set on a stored member
                      f"{m.similarity:.2f}", m.headline) for m in members],
                    title=f"story {story.story_id}: {story.label} ({len(members)} articles, "
                          f"{len(story.outlets)} outlets)")
    else:
        print_tsv(MEMBER_COLUMNS, [(iso(m.event_time), m.source, ",".join(m.topics), m.near_dup_of or "",
                                    f"{m.similarity:.4f}", m.headline, m.url or "") for m in members])
    sys.exit(EXIT_OK)


# --- newsmon cluster -----------------------------------------------------------------------------


def _date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.option("--input", "-i", "input_", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON lines: id, title, text (source, date, url optional; story, near_dup_of for --eval).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help='JSON lines {"id", "story", "near_dup_of"} ("-" for standard output).')
@click.option("--eval", "evaluate", is_flag=True,
              help="Print pairwise P/R/F1 and near-duplicate P/R against the story/near_dup_of labels.")
def cluster(input_: Path, output: str, evaluate: bool) -> None:
    """Assign articles to stories offline, in date order, exactly as the daemon does.

    The same features, assigner, in-memory window and SQLite state as the daemon
    (in a temporary database); each article is seen at its date.

    \b
    Examples:
      newsmon cluster --input articles.jsonl --output stories.jsonl
      newsmon cluster -i stories-dev.jsonl -o - --eval | tail -3

    Exit codes: 0 done, 2 unreadable input.
    """
    from monitor.runtime.stories import StoryKeeper
    from monitor.storage import open_storage
    from monitor.storage.stories import StoryRepository
    from monitor.stories import extract_features, outlet_of
    from monitor.stories.evaluation import evaluate_clusters

    rows: list[dict[str, Any]] = []
    for number, line in enumerate(input_.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{input_}:{number}: not JSON ({exc.msg})", EXIT_USAGE)
        if not isinstance(row, dict) or "id" not in row:
            fail(f"{input_}:{number}: a JSON object with an id is needed", EXIT_USAGE)
        rows.append(row)
    # Date order, as the daemon sees them; undated last, then by id (stable).
    rows.sort(key=lambda r: (_date(r.get("date")) or datetime.max.replace(tzinfo=UTC), str(r["id"])))
    stories_of: dict[str, str] = {}
    dups: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="newsmon-cluster-") as folder:
        storage = open_storage(Path(folder) / "cluster.db")
        try:
            first_date = next((d for d in (_date(r.get("date")) for r in rows) if d), utcnow())
            keeper = StoryKeeper(StoryRepository(storage.connection), clock=lambda: first_date)
            for row in rows:
                article_id = str(row["id"])
                published = _date(row.get("date"))
                source = str(row.get("source") or "") or outlet_of(row.get("url"))
                features = extract_features(article_id, str(row.get("title") or ""),
                                            str(row.get("text") or row.get("summary") or ""),
                                            source=source, published=published)
                assignment = keeper.assign_features(features, now=published or first_date)
                stories_of[article_id] = assignment.story_id
                if assignment.near_dup_of:
                    dups[article_id] = assignment.near_dup_of
                if assignment.duplicated_by:  # an earlier article turned out to copy this one
                    dups[assignment.duplicated_by] = article_id
                results.append({"id": article_id, "story": assignment.story_id,
                                "near_dup_of": assignment.near_dup_of})
        finally:
            storage.close()
    for result in results:  # a copy found later is written with the link too
        result["near_dup_of"] = dups.get(result["id"])
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output == "-":
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
    if evaluate:
        gold = {str(r["id"]): r.get("story") for r in rows}
        gold_dups = {str(r["id"]): str(r["near_dup_of"]) for r in rows if r.get("near_dup_of")}
        scores = evaluate_clusters(stories_of, gold, dups, gold_dups)
        out = click.echo if output != "-" else (lambda m: click.echo(m, err=True))
        out(f"{scores.articles} articles, {scores.stories_predicted} stories of 2+ predicted")
        out(f"same story  {scores.pairs.line()}")
        out(f"near-dup    {scores.near_dups.line()}  (directed copy -> fuller)")
    sys.exit(EXIT_OK)
