"""Builders for the storage tests: feed items, processed articles, a two-feed database,
and ``database_target``: the storage tests' fixture that runs each test on SQLite and on
PostgreSQL (a real server, ``tests/helpers/postgres.py``; those cases are marked
``postgres`` and skip, saying why, where PostgreSQL is not installed).

A test module parametrises its own fixture with ``BACKENDS`` and makes the database
with ``new_target(request.param, tmp_path, request)`` (a path or a URL for
``open_storage``), or imports ``database_target`` where a plain fixture will do.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.ingest.parse import canonical_url, content_hash
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TopicMatch
from monitor.storage import Storage, open_storage

FEED_A, FEED_B = "https://a.example/rss", "https://b.example/rss"


def make_item(guid: str, link: str | None, title: str = "Truce talks", summary: str = "s") -> FeedItem:
    return FeedItem(guid=guid, link=link, canonical_url=canonical_url(link), title=title,
                    summary=summary, published=datetime(2024, 12, 25, tzinfo=UTC),
                    content_hash=content_hash(title, summary))


def processed(item: FeedItem, topics: tuple[str, ...] = ("ceasefire",)) -> ProcessedArticle:
    article = Article(title=item.title, summary=item.summary, body="Body text.", text_source="page",
                      url=item.link)
    matches = tuple(
        TopicMatch(topic=t, score=5.0, threshold=3.0, severity="high",
                   evidence=(EvidenceSentence("body", "A truce.", "A **truce**.", ("truce",)),))
        for t in topics
    )
    return ProcessedArticle(item=item, article=article, matches=matches)


BACKENDS = (pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))


def new_target(backend: str, folder: Path, request: pytest.FixtureRequest) -> Path | str:
    """A fresh, empty database of ``backend``: a SQLite file in ``folder``, or a new
    database on the session's PostgreSQL server (its URL)."""
    if backend == "sqlite":
        return folder / "t.db"
    server = request.getfixturevalue("postgres_server")
    return str(server.new_database())


@pytest.fixture(params=BACKENDS)
def database_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Each storage test runs on SQLite and on PostgreSQL: a fresh database's path or URL."""
    return new_target(str(request.param), tmp_path, request)


def two_feeds(where: Path | str) -> Storage:
    """A fresh database with feeds A and B configured: ``where`` is a folder (a SQLite
    ``t.db`` in it), a database file, or a PostgreSQL URL (``database_target``)."""
    target = where / "t.db" if isinstance(where, Path) and where.is_dir() else where
    storage = open_storage(target)
    storage.feeds.sync([(FEED_A, "A", ["x"]), (FEED_B, "B", [])])
    return storage


@pytest.fixture(params=BACKENDS, name="store")
def two_feed_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """The ``store`` fixture of a module that imports it: a two-feed database (``two_feeds``),
    on SQLite and on PostgreSQL."""
    storage = two_feeds(new_target(request.param, tmp_path, request))
    yield storage
    storage.close()


def count(storage: Storage, table: str) -> int:
    return int(storage.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
