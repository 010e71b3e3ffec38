"""Story fixtures (no tests here): two wire texts, a processed article of one, and the
keeper scenario the SQLite and PostgreSQL story tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.models import Article, FeedItem, ProcessedArticle
from monitor.runtime.stories import StoryKeeper
from monitor.storage import open_storage
from monitor.storage.stories import StoryRepository
from monitor.stories.clustering import Assignment

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


@dataclass
class KeeperRun:
    """What ``restarted_keeper`` assigned, and the keeper of the reopened database."""

    first: Assignment  # a new story
    copy: Assignment  # the same wire text at another outlet
    other: Assignment  # another story
    again: Assignment  # ``copy`` once more (a re-run after a crash before its item write)
    indexed: int  # articles in the reopened keeper's window before it assigned anything
    later: Assignment  # after the restart: a shorter copy of the first story
    keeper: StoryKeeper


@contextmanager
def restarted_keeper(target: Path | str) -> Iterator[KeeperRun]:
    """A keeper assigns three articles (a story, its copy, another story) and the copy again;
    the database is closed and reopened, and a new keeper assigns a fourth article of the
    first story. The assignments are asserted here; the reopened database closes after."""
    clock = lambda: T0 + timedelta(hours=3)  # noqa: E731
    storage = open_storage(target)
    try:
        keeper = StoryKeeper(StoryRepository(storage.connection), clock=clock)
        first = keeper.assign(processed("https://a.example/1", "Russia and Ukraine agree ceasefire",
                                        WIRE, T0))
        copy = keeper.assign(processed("https://b.example/9", "Truce deal reached in Istanbul | B News",
                                       WIRE, T0 + timedelta(minutes=30)))
        other = keeper.assign(processed("https://c.example/2", "EU approves 5 billion euro aid", OTHER,
                                        T0 + timedelta(hours=1)))
        assert first.is_new_story and not copy.is_new_story and copy.story_id == first.story_id
        assert other.is_new_story and other.story_id != first.story_id
        again = keeper.assign(processed("https://b.example/9", "Truce deal reached in Istanbul", WIRE,
                                        T0 + timedelta(minutes=30)))
        assert again.story_id == copy.story_id and again.is_new_story is False
    finally:
        storage.close()

    reopened = open_storage(target)
    try:
        keeper = StoryKeeper(StoryRepository(reopened.connection), clock=clock)
        indexed = len(keeper.index)  # type: ignore[arg-type]
        later = keeper.assign(processed("https://d.example/5", "Ceasefire near Zaporizhzhia holds",
                                        WIRE[:700], T0 + timedelta(hours=2)))
        assert later.story_id == first.story_id and not later.is_new_story
        rows = keeper.repository.list_stories()
        assert [(r.story_id, r.size, r.outlets) for r in rows] == [(first.story_id, 3, 3),
                                                                   (other.story_id, 1, 1)]
        assert keeper.repository.story_members(first.story_id)[0].article_key == "url:https://a.example/1"
        yield KeeperRun(first, copy, other, again, indexed, later, keeper)
    finally:
        reopened.close()
