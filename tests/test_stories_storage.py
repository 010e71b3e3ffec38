"""Story state in SQLite: rows round-trip, the keeper's assignments survive a restart, and
the SQL-only index answers like the in-memory one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from monitor.models import Article, FeedItem, ProcessedArticle
from monitor.records import StoryArticleRecord, StoryRecord
from monitor.runtime.stories import StoryKeeper
from monitor.storage import open_storage
from monitor.storage.stories import StoryRepository
from monitor.stories import InMemoryStoryIndex, InMemoryTermStatistics, StoryAssigner, extract_features
from monitor.stories.stored import (
    StoredStoryIndex,
    StoredTermStatistics,
    article_from_record,
    article_to_record,
    story_from_record,
    story_to_record,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)

WIRE = ("KYIV, Ukraine (AP) — Russia and Ukraine agreed on Tuesday to a ceasefire along the front line "
        "near Zaporizhzhia, officials in both capitals said, after three days of talks in Istanbul "
        "mediated by Turkey. The truce is to begin at midnight and will be monitored by observers "
        "from the OSCE, said Turkish foreign minister Hakan Fidan. Ukrainian president Volodymyr "
        "Zelenskyy said the agreement covered 42 towns and the Zaporizhzhia nuclear plant. Russian "
        "officials said prisoner exchanges of 300 soldiers would follow within a week. Previous "
        "attempts at a local truce collapsed within days in 2022 and 2023, and both sides accused "
        "each other of shelling the plant's perimeter in the spring.")
OTHER = ("The European Union approved a new 5 billion euro package of military aid for Ukraine on "
         "Thursday, including artillery shells and air defence systems, after Hungary lifted its "
         "veto at a summit in Brussels. Deliveries of the first 250,000 shells are expected by June, "
         "EU foreign policy chief Josep Borrell said, adding that training for Ukrainian pilots "
         "would expand in Denmark and Romania under the same fund.")


def processed(url: str, title: str, text: str, published: datetime) -> ProcessedArticle:
    item = FeedItem(guid=url, link=url, canonical_url=url, title=title, summary="", published=published)
    article = Article(title=title, summary="", body=text, text_source="page", url=url,
                      feed_url="http://feeds.example/rss", published=published)
    return ProcessedArticle(item=item, article=article)


def test_story_rows_round_trip(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.db")
    repo = StoryRepository(storage.connection)
    features = extract_features("url:https://a.example/1", "Ceasefire agreed", WIRE, source="a.example",
                                published=T0)
    assigner = StoryAssigner(InMemoryStoryIndex(), InMemoryTermStatistics())
    assignment = assigner.assign(features, T0)
    index = assigner.index
    assert isinstance(index, InMemoryStoryIndex)
    story = index.story(assignment.story_id)
    stored_article = index.article(features.article_id)
    assert story is not None and stored_article is not None
    record = article_to_record(stored_article, assignment, outlets_after=1)
    repo.save(story_to_record(story), record, ["ceasefire", "zaporizhzhia"], features.head_terms)

    back_story = repo.story(story.story_id)
    back_article = repo.article(features.article_id)
    assert isinstance(back_story, StoryRecord) and isinstance(back_article, StoryArticleRecord)
    assert story_from_record(back_story) == story
    restored = article_from_record(back_article)
    assert restored.vector == stored_article.vector and restored.event_time == T0
    assert np.array_equal(restored.fingerprint.sample, stored_article.fingerprint.sample)
    assert restored.fingerprint.exact == stored_article.fingerprint.exact
    assert back_article.is_new_story and back_article.outlets_after == 1
    assert repo.candidates(["ceasefire", "nothing"], T0 - timedelta(days=1), T0 + timedelta(days=1),
                           10, 400) == [features.article_id]
    assert repo.candidates(["ceasefire"], T0 + timedelta(days=3), T0 + timedelta(days=4), 10, 400) == []
    assert repo.candidates(["ceasefire"], T0 - timedelta(days=1), T0 + timedelta(days=1), 10, 0) == []
    assert repo.counter("documents") == 1
    assert repo.document_frequencies(["ceasefire", "absent"]) == {"ceasefire": 1}
    assert repo.prune_postings(T0 + timedelta(seconds=1)) == 2
    storage.close()


def test_the_keeper_assigns_stores_and_reloads_its_window(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    storage = open_storage(path)
    clock = lambda: T0 + timedelta(hours=3)  # noqa: E731
    keeper = StoryKeeper(StoryRepository(storage.connection), clock=clock)
    first = keeper.assign(processed("https://a.example/1", "Russia and Ukraine agree ceasefire", WIRE, T0))
    copy = keeper.assign(processed("https://b.example/9", "Truce deal reached in Istanbul | B News",
                                   WIRE, T0 + timedelta(minutes=30)))
    other = keeper.assign(processed("https://c.example/2", "EU approves 5 billion euro aid", OTHER,
                                    T0 + timedelta(hours=1)))
    assert first.is_new_story and not copy.is_new_story and copy.story_id == first.story_id
    assert copy.near_dup_of == "url:https://a.example/1" or copy.duplicated_by == "url:https://a.example/1"
    assert other.is_new_story and other.story_id != first.story_id
    # The same article again (a re-run after a crash before its item write): the stored answer.
    again = keeper.assign(processed("https://b.example/9", "Truce deal reached in Istanbul", WIRE,
                                    T0 + timedelta(minutes=30)))
    assert again.story_id == copy.story_id and again.is_new_story is False
    storage.close()

    reopened = open_storage(path)
    keeper = StoryKeeper(StoryRepository(reopened.connection), clock=clock)
    assert len(keeper.index) == 3  # type: ignore[arg-type]
    later = keeper.assign(processed("https://d.example/5", "Ceasefire near Zaporizhzhia holds", WIRE[:700],
                                    T0 + timedelta(hours=2)))
    assert later.story_id == first.story_id and not later.is_new_story
    rows = keeper.repository.list_stories()
    assert [(r.story_id, r.size, r.outlets) for r in rows] == [(first.story_id, 3, 3), (other.story_id, 1, 1)]
    members = keeper.repository.story_members(first.story_id)
    assert members[0].article_key == "url:https://a.example/1"
    reopened.close()


def test_the_sql_index_finds_what_memory_finds(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.db")
    repo = StoryRepository(storage.connection)
    index = StoredStoryIndex(repo)
    stats = StoredTermStatistics(repo)
    stats.bind(index.pending)
    sql = StoryAssigner(index, stats)
    memory = StoryAssigner(InMemoryStoryIndex(), InMemoryTermStatistics())
    texts = [("Russia and Ukraine agree ceasefire", WIRE), ("EU approves aid package", OTHER),
             ("Ceasefire deal signed in Istanbul", WIRE[:650]), ("Aid: EU shells by June", OTHER[:300])]
    answers = []
    for number, (title, text) in enumerate(texts):
        features = extract_features(f"a{number}", title, text, source=f"s{number}",
                                    published=T0 + timedelta(minutes=number))
        stats.prefetch([*features.head_terms, *features.body_terms])
        got = sql.assign(features, T0 + timedelta(hours=1))
        index.flush(got)
        want = memory.assign(features, T0 + timedelta(hours=1))
        answers.append((got.is_new_story, want.is_new_story, got.near_dup_of, want.near_dup_of))
    assert [(a[0], a[2]) for a in answers] == [(a[1], a[3]) for a in answers]
    storage.close()
