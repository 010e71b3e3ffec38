"""Full-text search: the index kept in the item's transaction, safe query syntax,
filters, ranking and highlights, and ``newsmon search`` (table, TSV, --json, exit codes)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli.app import cli
from monitor.config import Config
from monitor.records import utcnow
from monitor.storage import Storage, open_readonly, open_storage
from monitor.storage.search import MARK_START, SearchFilters, SearchRepository, fts_query
from tests.helpers.servers import Site
from tests.helpers.storage import BACKENDS, new_target
from tests.helpers.web import fill


@pytest.fixture(scope="module", params=BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A database filled by the real pipeline: SQLite (FTS5) and PostgreSQL (tsvector)."""
    folder = tmp_path_factory.mktemp("search")
    target = new_target(request.param, folder, request)
    with Site() as site:
        yield fill(folder, site, database=str(target) if isinstance(target, str) else "web.db")


def indexed(store: Storage) -> int:
    """How many articles the full-text index holds."""
    if store.dialect == "postgresql":  # the generated tsvector column (schema.PG_BASELINE_DDL)
        return int(store.db.execute("SELECT COUNT(*) FROM articles WHERE search IS NOT NULL"
                                    " AND length(search) > 0").fetchone()[0])
    return int(store.db.execute("SELECT COUNT(*) FROM articles_fts").fetchone()[0])


@pytest.mark.parametrize("text", ['"', "AND", "OR", "NOT", "NEAR(a b", "title:x", "a\"b", "(", "*",
                                  "-", "^x", "ceasefire OR", '"unterminated phrase', "x AND -y"])
def test_no_user_query_can_raise(filled: Config, text: str) -> None:
    store = open_readonly(filled)
    try:
        SearchRepository(store.connection).search(text)
    finally:
        store.close()


def test_operators_people_expect() -> None:
    assert fts_query("peace talks") == '"peace" AND "talks"'
    assert fts_query('"peace deal" -rumour') == '("peace deal") NOT "rumour"'
    assert fts_query("cease*") == '"cease"*'
    assert fts_query("kyiv OR kiev") == '("kyiv" OR "kiev")'
    assert fts_query("-only") == ""


def test_every_recorded_article_is_indexed_and_ranked(filled: Config) -> None:
    store = open_readonly(filled)
    try:
        search = SearchRepository(store.connection)
        assert indexed(store) == store.db.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
        page = search.search("ceasefire")
        assert page.total >= 2 and page.hits[0].rank is not None
        assert MARK_START in page.hits[0].title or MARK_START in page.hits[0].snippet
        assert search.search("midnight").total == 1  # a word of the extracted body only
        assert search.search("ceasefire", SearchFilters(topic="ceasefire")).total >= 1
        assert search.search("football", SearchFilters(matched_only=True)).total == 0
        assert search.search("football").total == 1
        assert search.search("ceasefire", SearchFilters(feed="loopback-news")).total >= 2
        assert search.search("ceasefire", SearchFilters(feed="other")).total == 0
        assert search.search("ceasefire", SearchFilters(since=utcnow() + timedelta(days=1))).total == 0
        assert search.search("ceasefire", per_page=1, page=2).hits
    finally:
        store.close()


def test_a_pruned_body_leaves_the_index(filled: Config, tmp_path_factory: pytest.TempPathFactory,
                                       request: pytest.FixtureRequest) -> None:
    import shutil

    copy: Path | str
    if filled.is_postgres:  # a copy of the database (no connection is open on it between tests)
        server = request.getfixturevalue("postgres_server")
        name = f"pruned_{uuid.uuid4().hex[:8]}"
        server.psql(f'CREATE DATABASE "{name}" TEMPLATE "{str(filled.database).rsplit("/", 1)[1]}"')
        copy = server.url(name)
    else:
        copy = tmp_path_factory.mktemp("pruned") / "copy.db"
        shutil.copy(filled.database_path(), copy)
    store = open_storage(copy)
    try:
        store.ops.prune_bodies(utcnow() + timedelta(days=1))
        search = SearchRepository(store.connection)
        assert search.search("midnight").total == 0  # body words gone with the body
        assert search.search("ceasefire").total >= 2  # titles and summaries stay searchable
        if store.dialect == "sqlite":
            assert store.db.execute(
                "INSERT INTO articles_fts (articles_fts, rank) VALUES ('integrity-check', 1)") is not None
    finally:
        store.close()


def test_the_search_command(filled: Config) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["search", "ceasefire", "--config", str(filled.source), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total"] >= 2 and all("\x02" not in h["title"] for h in data["hits"])
    plain = runner.invoke(cli, ["search", "ceasefire", "--topic", "ceasefire", "--since", "30d",
                                "--config", str(filled.source)])
    assert plain.exit_code == 0 and plain.output.splitlines()[0].split("\t")[:3] == [
        "id", "first_seen", "topics"]
    none = runner.invoke(cli, ["search", "zzzznothing", "--config", str(filled.source)])
    assert none.exit_code == 1
    bad = runner.invoke(cli, ["search", "x", "--since", "soon", "--config", str(filled.source)])
    assert bad.exit_code == 2 and "error:" in bad.output
    odd = runner.invoke(cli, ["search", '"AND', "--config", str(filled.source)])
    assert odd.exit_code in (0, 1) and "Traceback" not in odd.output


def _small_archive(path: object, count: int) -> None:
    """``count`` articles through ``record_item``, each holding "ceasefire"; the newest ones
    also say "truce" twice (the best bm25)."""
    from monitor.identity import item_planner, no_channels
    from monitor.models import Article, FeedItem, ProcessedArticle

    store = open_storage(path)  # type: ignore[arg-type]
    try:
        store.feeds.sync([("https://archive.example/rss", "archive", [])])
        feed = store.feeds.get("https://archive.example/rss")
        assert feed is not None
        for n in range(count):
            link = f"https://archive.example/{n}"
            body = f"Report {n} on the ceasefire." + (" Truce truce holds." if n % 10 == 0 else "")
            item = FeedItem(guid=link, link=link, canonical_url=link, title=f"Report {n}", summary="",
                            published=None, content_hash=str(n))
            store.items.record_item(feed.id, "archive", ProcessedArticle(
                item=item, article=Article(title=item.title, summary="", body=body, text_source="page",
                                           url=link)),
                article_key=f"url:{link}", plan=item_planner((), no_channels))
    finally:
        store.close()


def test_counting_stops_at_the_cap_and_a_huge_result_is_ranked_among_the_newest(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    import monitor.storage.search as search_module

    path = Path(str(tmp_path)) / "archive.db"
    _small_archive(path, 60)
    monkeypatch.setattr(search_module, "COUNT_CAP", 25)
    monkeypatch.setattr(search_module, "RANK_WINDOW", 30)
    store = open_readonly(path)
    try:
        search = SearchRepository(store.connection)
        few = search.search("truce")  # 6 hits: under the cap, all ranked, counted exactly
        assert few.total == 6 and not few.total_capped and few.ranked_within is None
        many = search.search("ceasefire", per_page=10)
        assert many.total_capped and many.total == 24 and many.total_text == "24+"
        assert many.ranked_within == 30
        # Ranked (bm25) inside the newest 30 hits: ids 31..60, best (the "truce" ones) first.
        ids = [h.article_id for h in many.hits]
        assert min(ids) >= 31 and len(ids) == 10
        ranks = [h.rank for h in many.hits]
        assert ranks == sorted(ranks)  # type: ignore[type-var]
        # A page past the window still comes back (the window grows to reach it).
        deep = search.search("ceasefire", per_page=10, page=4)
        assert len(deep.hits) == 10 and deep.ranked_within == 40
        listing = search.search("", SearchFilters(), per_page=10)  # no text: newest first, capped count
        assert [h.article_id for h in listing.hits] == list(range(60, 50, -1)) and listing.total_capped
    finally:
        store.close()
