"""Full-text search: the index kept in the item's transaction, safe query syntax,
filters, ranking and highlights, and ``newsmon search`` (table, TSV, --json, exit codes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner

from monitor.cli.app import cli
from monitor.config import Config
from monitor.records import utcnow
from monitor.storage import open_readonly, open_storage
from monitor.storage.search import MARK_START, SearchFilters, SearchRepository, fts_query
from tests.helpers.servers import Site
from tests.helpers.web import fill


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    with Site() as site:
        yield fill(tmp_path_factory.mktemp("search"), site)


@pytest.mark.parametrize("text", ['"', "AND", "OR", "NOT", "NEAR(a b", "title:x", "a\"b", "(", "*",
                                  "-", "^x", "ceasefire OR", '"unterminated phrase', "x AND -y"])
def test_no_user_query_can_raise(filled: Config, text: str) -> None:
    store = open_readonly(filled.database_path())
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
    store = open_readonly(filled.database_path())
    try:
        search = SearchRepository(store.connection)
        indexed = store.db.execute("SELECT COUNT(*) FROM articles_fts").fetchone()[0]
        assert indexed == store.db.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
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


def test_a_pruned_body_leaves_the_index(filled: Config, tmp_path_factory: pytest.TempPathFactory) -> None:
    import shutil

    copy = tmp_path_factory.mktemp("pruned") / "copy.db"
    shutil.copy(filled.database_path(), copy)
    store = open_storage(copy)
    try:
        store.ops.prune_bodies(utcnow() + timedelta(days=1))
        search = SearchRepository(store.connection)
        assert search.search("midnight").total == 0  # body words gone with the body
        assert search.search("ceasefire").total >= 2  # titles and summaries stay searchable
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
