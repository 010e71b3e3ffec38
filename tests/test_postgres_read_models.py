"""The same data gives the same answers on SQLite and PostgreSQL: every read model the CLI
and the web workspace use, the story repository (the keeper's assignments, the SQL
candidate index), analyst feedback and search, on a database filled by the real pipeline.

Timestamps are taken when each row is written, so they are compared by presence only.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config
from monitor.records import utcnow
from monitor.storage import Storage, open_storage
from monitor.storage import read_models as views
from monitor.storage.feedback import FeedbackRepository
from monitor.storage.search import SearchFilters, SearchRepository
from tests.helpers.postgres import PostgresServer
from tests.helpers.servers import Site
from tests.helpers.storage import BACKENDS, new_target
from tests.helpers.stories import T0, restarted_keeper
from tests.helpers.web import fill

pytestmark = pytest.mark.postgres
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")  # a stored ISO time (iso())


def plain(value: Any) -> Any:
    """``value`` with every datetime replaced by whether it was set (rows are compared)."""
    if isinstance(value, datetime) or (isinstance(value, str) and _STAMP.match(value)):
        return "<time>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    return value


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
         ) -> Iterator[dict[str, Config]]:
    """One filled database per backend, from the same feed and pages."""
    configs = {}
    with Site() as site:
        configs["sqlite"] = fill(tmp_path_factory.mktemp("lite"), site)
        configs["postgresql"] = fill(tmp_path_factory.mktemp("pg"), site,
                                     database=postgres_server.new_database())
    yield configs


def answers(store: Storage, config: Config) -> dict[str, Any]:
    """Every read the CLI and the web pages make, on one database."""
    conn = store.connection
    ids = [r.id for r in views.stored_articles(conn)]
    channels = [c.name for c in config.channels]
    out: dict[str, Any] = {
        "articles": len(ids),
        "feed_table": store.views.feed_table(config.feeds),
        "alert_list": store.views.alert_list(limit=100),
        "alert_list_pending": store.views.alert_list(status="pending"),
        "figures": dataclasses.replace(store.views.status_figures(), database="", database_bytes=0),
        "channel_health": store.outbox.channel_health(),
        "counts": store.outbox.counts(),
        "due_channels": store.outbox.due_channels(),
        "latest_matches": views.latest_matches(conn, per_topic=3),
        "daily_volume": views.daily_volume(conn, since=utcnow() - timedelta(days=2)),
        "details": [views.article_detail(conn, i) for i in ids],
        "unknown_detail": views.article_detail(conn, 10_000),
        "channel_summary": views.channel_summary(conn, channels),
        "count_articles": views.count_articles(conn, since=utcnow() - timedelta(days=1)),
        "matched_topics": views.matched_topics(conn, ids),
        "matches_of": views.matches_of(conn, ids),
        "alert_events": views.alert_events(conn, limit=20),
    }
    for topic in {m.topic for d in out["details"] if d for m in d.matches}:
        out[f"alert_events:{topic}"] = views.alert_events(conn, topic=topic)
    search = SearchRepository(conn)
    for query, filters in (("", SearchFilters()), ("", SearchFilters(matched_only=True)),
                           ("ceasefire", SearchFilters(feed="loopback-news")),
                           ("zzzznothing", SearchFilters())):
        page = search.search(query, filters, per_page=50)
        # Which articles match is the same; the rank scale and the highlights differ (bm25
        # and FTS5's snippet, ts_rank and ts_headline): docs/postgresql.md.
        out[f"search:{query}:{filters}"] = (page.total, sorted(h.article_id for h in page.hits))
    return out


def test_every_read_model_answers_the_same_on_both_backends(both: dict[str, Config]) -> None:
    results = {}
    for backend, config in both.items():
        store = open_storage(config)
        try:
            assert store.dialect == backend
            results[backend] = plain(answers(store, config))
        finally:
            store.close()
    lite, pg = results["sqlite"], results["postgresql"]
    assert lite["articles"] > 3 and lite["alert_list"]  # a real fill, not two empty answers
    for key in lite:
        assert pg[key] == lite[key], key


def test_feedback_reads_back_the_same(both: dict[str, Config]) -> None:
    judged = {}
    for backend, config in both.items():
        store = open_storage(config)
        try:
            repo = FeedbackRepository(store.connection)
            article_id = next(iter(views.stored_articles(store.connection))).id
            repo.add(article_id, "relevant", note="a good one", source="test")
            repo.add(article_id, "not_relevant", topic="aid", source="test")
            alert = store.views.alert_list(limit=1)[0]
            assert repo.target(str(alert.id)) == repo.target(alert.alert_key)
            assert repo.target(f"article:{article_id}") is not None and repo.target("article:x") is None
            judged[backend] = plain((repo.judged(["aid", "ceasefire"]), repo.for_article(article_id),
                                     repo.latest(limit=5)))
        finally:
            store.close()
    assert judged["postgresql"] == judged["sqlite"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_story_keeper_assigns_and_reloads(backend: str, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    """Stories on both backends: assignments, the SQL candidate index after a restart,
    the CLI's story list and members (``group_concat`` → ``string_agg``, upserts)."""
    with restarted_keeper(new_target(backend, tmp_path, request)) as run:
        repo = run.keeper.repository
        assert run.indexed == 3
        assert repo.counter("documents") == 4 and repo.latest_event_time() is not None
        assert repo.prune_postings(T0 + timedelta(days=30)) > 0


def test_the_web_workspace_serves_a_postgresql_database(both: dict[str, Config]) -> None:
    """``newsmon web`` over PostgreSQL: the pages that read (and the Atom feed) answer, with
    the same articles as on SQLite; the read connection refuses writes by itself."""
    import urllib.request

    from tests.helpers.web import WebServer

    pages: dict[str, dict[str, int]] = {}
    for backend, config in both.items():
        with WebServer(config) as srv:
            statuses = {}
            for path in ("/", "/search?q=ceasefire", "/search?q=", "/article/1", "/feeds",
                         "/channels", "/stories", "/feeds/all.atom", "/healthz"):
                try:
                    with urllib.request.urlopen(srv.url + path, timeout=30) as response:
                        statuses[path] = response.status
                        if path == "/search?q=ceasefire":
                            assert "ceasefire" in response.read().decode().lower()
                except urllib.error.HTTPError as exc:
                    statuses[path] = exc.code
            pages[backend] = statuses
    assert pages["postgresql"] == pages["sqlite"]
    assert set(pages["postgresql"].values()) == {200}, pages
