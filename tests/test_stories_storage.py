"""Story state in SQLite: rows round-trip, the keeper's assignments survive a restart, and
the SQL-only index answers like the in-memory one."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from monitor.records import StoryArticleRecord, StoryRecord
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
from tests.helpers.stories import OTHER, T0, WIRE, processed, restarted_keeper

__all__ = ["OTHER", "T0", "WIRE", "processed"]  # tests/test_stories_cli.py imports them from here


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
    with restarted_keeper(tmp_path / "s.db") as run:
        assert (run.copy.near_dup_of == "url:https://a.example/1"
                or run.copy.duplicated_by == "url:https://a.example/1")
        assert run.indexed == 3


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
