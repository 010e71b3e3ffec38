"""Retention prunes old article bodies only; matches, evidence and alerts stay."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from monitor.config import ServiceSettings
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TermHit, TopicMatch
from monitor.records import iso, utcnow
from monitor.runtime.retention import maintain
from monitor.storage import Storage, open_storage
from tests.helpers.delivery import record


def _record(store: Storage, feed_id: int, n: int) -> int:
    item = FeedItem(guid=f"g{n}", link=f"https://example.org/{n}",
                    canonical_url=f"https://example.org/{n}", title=f"Story {n}",
                    summary=f"Summary {n}", published=None, content_hash=f"h{n}")
    article = Article(title=f"Story {n}", summary=f"Summary {n}", body=f"Body text {n}. " * 400,
                      text_source="page", url=item.link, feed_url="https://example.org/feed")
    match = TopicMatch(
        topic="ceasefire", score=3.0, threshold=2.0, severity="high",
        hits=(TermHit(term="truce", text="truce", field="body", sentence=0, weight=3.0),),
        evidence=(EvidenceSentence(field="body", text="a truce", marked="a **truce**",
                                   terms=("truce",)),))
    result = record(store, feed_id, "feed", ProcessedArticle(item, article, (match,)),
                    lambda m: ["hook"])
    return result.article_id


def _store(tmp_path: Path) -> tuple[Storage, int, int]:
    store = open_storage(tmp_path / "r.db")
    store.feeds.sync([("https://example.org/feed", "feed", ())])
    feed_id = store.feeds.get("https://example.org/feed").id
    old, new = _record(store, feed_id, 1), _record(store, feed_id, 2)
    long_ago = iso(utcnow() - timedelta(days=45))
    store.db.execute("UPDATE articles SET first_seen = ? WHERE id = ?", (long_ago, old))
    return store, old, new


def test_old_bodies_are_pruned_and_everything_else_stays(tmp_path: Path) -> None:
    store, old, new = _store(tmp_path)
    before = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("articles", "items", "matches", "alerts")}
    report = maintain(store.ops, ServiceSettings(body_retention="30d"), idle=True)
    assert report.bodies_pruned == 1

    rows = {r["id"]: r for r in store.db.query("SELECT * FROM articles")}
    assert rows[old]["body"] is None and rows[old]["body_pruned"] == 1
    assert rows[old]["title"] == "Story 1" and rows[old]["summary"] == "Summary 1"
    assert rows[new]["body"].startswith("Body text 2.") and rows[new]["body_pruned"] == 0
    after = {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
             for t in ("articles", "items", "matches", "alerts")}
    assert after == before
    evidence = store.db.execute("SELECT evidence FROM matches WHERE article_id = ?",
                                (old,)).fetchone()[0]
    assert "a **truce**" in evidence
    # Pruned once: a second run has nothing left to do.
    assert maintain(store.ops, ServiceSettings(body_retention="30d"), idle=True).bodies_pruned == 0
    store.close()


def test_retention_off_keeps_bodies_and_old_cycles_go(tmp_path: Path) -> None:
    store, old, _ = _store(tmp_path)
    store.ops.record_cycle(utcnow(), feeds_ok=1, feeds_failed=0, items_new=2, matches=2, alerts=2)
    stale = store.ops.record_cycle(utcnow(), feeds_ok=1, feeds_failed=0, items_new=0, matches=0,
                                   alerts=0)
    store.db.execute("UPDATE cycles SET finished_at = ? WHERE id = ?",
                     (iso(utcnow() - timedelta(days=200)), stale))
    report = maintain(store.ops, ServiceSettings(body_retention=None), idle=True)
    assert report.bodies_pruned == 0 and report.cycles_pruned == 1
    assert store.db.execute("SELECT body_pruned FROM articles WHERE id = ?", (old,)).fetchone()[0] == 0
    assert store.db.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 1
    store.close()


def test_vacuum_runs_only_when_idle_and_worth_it(tmp_path: Path) -> None:
    store, _, _ = _store(tmp_path)
    feed_id = store.feeds.get("https://example.org/feed").id
    for n in range(3, 40):
        _record(store, feed_id, n)
    # 45-day-old bodies pruned: most of the file becomes free pages.
    store.db.execute("UPDATE articles SET first_seen = ?", (iso(utcnow() - timedelta(days=45)),))
    busy = maintain(store.ops, ServiceSettings(body_retention="30d"), idle=False)
    assert busy.bodies_pruned == 39 and busy.free_fraction > 0.25 and not busy.vacuumed
    idle = maintain(store.ops, ServiceSettings(body_retention="30d"), idle=True)
    assert idle.vacuumed
    assert store.ops.free_fraction() < 0.05
    store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM matches").fetchone()[0] == 39


def test_the_default_keeps_a_year_of_bodies_for_search_and_backtest(tmp_path: Path) -> None:
    store, _, _ = _store(tmp_path)
    feed_id = store.feeds.get("https://example.org/feed").id
    _record(store, feed_id, 3)  # with the two of _store: three articles
    store.db.execute("UPDATE articles SET first_seen = ?", (iso(utcnow() - timedelta(days=300)),))
    assert maintain(store.ops, ServiceSettings(), idle=True).bodies_pruned == 0
    store.db.execute("UPDATE articles SET first_seen = ?", (iso(utcnow() - timedelta(days=401)),))
    assert maintain(store.ops, ServiceSettings(), idle=True).bodies_pruned == 3
    store.close()
