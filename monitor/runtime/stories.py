"""The story keeper: assigns each new article to a story, in the main process, before its item write.

The worker builds the article's story features (``worker.StoryFeatures``); the
pipeline's record step calls ``keeper.assign(processed)`` for each new article,
then ``keeper.context(assignment)`` gives ``identity.plan_item`` what each channel
already heard of the story, so the item's outbox rows are keyed per story in the
item's own transaction.

State: the assignment window in memory (``stories.stored.WindowStoryIndex``, rebuilt
from the database at start-up), every change written to the story tables
(``storage/stories.py``) before the item write. Article ids are article keys
(``identity.article_key``), known before the article row exists; an article
assigned before a crash gets its stored assignment back when re-run.

Bursts: for an article with matches, the story's and each topic's recent rate (when their
articles were first seen, read from storage) go to ``stories.bursts.judge``; a burst is
given to ``plan_item`` in the context (severity raised, the message says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.config import DeliverySettings
from monitor.identity import (
    StoryAlertPolicy,
    StoryBurst,
    StoryContext,
    ToldAlert,
    article_key,
    channel_story_states,
)
from monitor.models import ProcessedArticle
from monitor.storage.db import Connection
from monitor.storage.stories import StoryRepository
from monitor.stories import ArticleFeatures, Assignment, StoryAssigner, StoryConfig, features_from_article
from monitor.stories.bursts import BurstPolicy, judge, strongest
from monitor.stories.features import outlet_of
from monitor.stories.stored import (
    StoredStoryIndex,
    StoredTermStatistics,
    WindowStoryIndex,
    assignment_from_record,
    window_start,
)

log = logging.getLogger(__name__)

PRUNE_EVERY = 500  # assignments between prunes of the in-memory window


def _now() -> datetime:
    return datetime.now(UTC)


def story_options(delivery: DeliverySettings) -> dict[str, Any]:
    """The keeper's alert policy and burst policy from the ``delivery`` settings."""
    wanted = set(delivery.follow_up_on)
    policy = StoryAlertPolicy(outlets_step=delivery.follow_up_outlets, on_new_topic="topic" in wanted,
                              on_new_facts="facts" in wanted, on_burst="burst" in wanted)
    settings = delivery.bursts
    bursts = BurstPolicy(window=timedelta(seconds=settings.window),
                         baseline=timedelta(seconds=settings.baseline), factor=settings.factor,
                         min_articles=settings.min_articles,
                         min_history=timedelta(seconds=settings.min_history)) if settings.enabled else None
    return {"policy": policy, "bursts": bursts}


class StoryKeeper:
    """Owns the assigner and its storage; one per pipeline (one thread)."""

    def __init__(self, repository: StoryRepository, *, config: StoryConfig | None = None,
                 policy: StoryAlertPolicy | None = None, clock: Callable[[], datetime] = _now,
                 in_memory_window: bool = True, bursts: BurstPolicy | None = None) -> None:
        self.repository = repository
        self.config = config or StoryConfig()
        self.policy = policy or StoryAlertPolicy()
        self.bursts = bursts  # None: no burst detection
        self.clock = clock
        self.index: WindowStoryIndex | StoredStoryIndex
        if in_memory_window:
            window = WindowStoryIndex(repository)
            # Up to the newest stored article, not the clock: a store of old dates (a backlog,
            # an import) keeps its last window.
            latest = repository.latest_event_time()
            end = clock() if latest is None else min(clock(), latest)
            loaded = window.load(window_start(end, self.config.window))
            log.debug("story window: %d articles loaded", loaded)
            self.index = window
        else:
            self.index = StoredStoryIndex(repository)
        self.statistics = StoredTermStatistics(repository)
        self.statistics.bind(self.index.pending)
        self.assigner = StoryAssigner(self.index, self.statistics, config=self.config, clock=clock)
        self._since_prune = 0

    @classmethod
    def for_storage(cls, storage: object, **options: object) -> StoryKeeper | None:
        """A keeper on the storage's connection; None for a storage without one (test doubles)."""
        connection = getattr(storage, "connection", None)
        if not isinstance(connection, Connection):
            return None
        return cls(StoryRepository(connection), **options)  # type: ignore[arg-type]  # the connection is checked by for_storage above

    def features(self, processed: ProcessedArticle) -> ArticleFeatures:
        """The worker's features (re-keyed by article key), else built here (items not processed)."""
        key = article_key(processed.item)
        features = processed.story_features
        if isinstance(features, ArticleFeatures):
            return features if features.article_id == key else replace(features, article_id=key)
        article = processed.article
        return features_from_article(key, article, source=outlet_of(article.url or processed.item.link,
                                                                    article.feed_url))

    def assign(self, processed: ProcessedArticle, *, now: datetime | None = None) -> Assignment:
        """The article's story: assigned and stored now, or as stored by an earlier run."""
        key = article_key(processed.item)
        stored = self.repository.article(key)
        if stored is not None:
            story = self.index.story(stored.story_id)
            return assignment_from_record(stored, story.label if story else "")
        return self.assign_features(self.features(processed), now=now)

    def assign_features(self, features: ArticleFeatures, *, now: datetime | None = None) -> Assignment:
        """Assign and store one article's features (``newsmon cluster`` calls this directly)."""
        self.statistics.prefetch([*features.head_terms, *features.body_terms])
        moment = now or self.clock()
        assignment = self.assigner.assign(features, moment)
        self.index.flush(assignment)
        self._since_prune += 1
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self.index.prune(window_start(moment, self.config.window))
        return assignment

    def context(self, assignment: Assignment, topics: tuple[str, ...] = ()) -> StoryContext:
        """What ``identity.plan_item`` needs: the story's outlets, each channel's alerts of it, and
        a burst of the story or of one of ``topics`` (the article's matched topics)."""
        story = self.index.story(assignment.story_id)
        outlets = len(story.outlets) if story is not None else 0
        alerts = [ToldAlert(a.channel, a.topic, a.alert_key, a.outlets, a.evidence, a.note)
                  for a in self.repository.story_alerts(assignment.story_id)]
        return StoryContext(story_id=assignment.story_id, outlets=outlets,
                            channels=channel_story_states(alerts, assignment.story_id), policy=self.policy,
                            burst=self.burst(assignment, topics) if topics else None)

    def burst(self, assignment: Assignment, topics: tuple[str, ...]) -> StoryBurst | None:
        """A burst of the article's story or of one of its topics, judged on the rates stored."""
        if self.bursts is None:
            return None
        policy, now = self.bursts, self.clock()
        since = now - policy.window - policy.baseline
        found = [judge(self.repository.story_seen_times(assignment.story_id, since),
                       self.repository.story_first_seen(assignment.story_id), now, policy=policy)]
        for topic in dict.fromkeys(topics):
            found.append(judge(self.repository.topic_match_times(topic, since),
                               self.repository.topic_first_match(topic), now, subject=f"topic {topic}",
                               policy=policy))
        chosen = strongest(found)
        return StoryBurst(chosen.note) if chosen else None

    def plan_context(self, processed: ProcessedArticle) -> StoryContext:
        """``assign`` then ``context``: the one call the pipeline's record step makes per new article."""
        return self.context(self.assign(processed), tuple(m.topic for m in processed.matches))


class LazyStoryKeeper:
    """The pipeline's handle: a keeper made on first use, on the database thread that calls it.

    ``plan_context`` never raises: a failure of the story engine is logged and the item
    is then planned as before stories (alerts per article), never lost.
    """

    def __init__(self, storage: object, **options: object) -> None:
        self.storage = storage
        self.options = options
        self.keeper: StoryKeeper | None = None
        self._unavailable = False

    def plan_context(self, processed: ProcessedArticle) -> StoryContext | None:
        if self._unavailable:
            return None
        try:
            if self.keeper is None:
                self.keeper = StoryKeeper.for_storage(self.storage, **self.options)
                if self.keeper is None:
                    self._unavailable = True
                    return None
            return self.keeper.plan_context(processed)
        except Exception:  # the item must still be stored, with its alerts
            log.exception("story assignment failed for %s", processed.item.link or processed.item.guid)
            return None
