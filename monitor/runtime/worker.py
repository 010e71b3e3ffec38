"""The per-article stages (extract, then analyse and match), in a worker process.

These stages are CPU-bound (about 25 ms a page), so they run in a pool of
processes, one per core, while fetching stays concurrent I/O in the event loop.

An article goes through an ordered list of ``Stage``s, each a small callable
from one ``ArticleState`` to the next (in the style of lemon24/reader's hook
lists); ``build_stages`` makes the list from the settings, the one place where
the order is decided (optional stages, such as language detection or a learned
second stage, go in there). Each worker builds its stages once, in the pool
initializer; the per-process list below is the only module state, and exists
because a process pool can hand a function nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from monitor.analysis.extract import build_article
from monitor.config import Config
from monitor.identity import article_key
from monitor.ingest.parse import parse_feed
from monitor.models import Article, ArticleInput, ParsedFeed, ProcessedArticle, TopicMatch
from monitor.rules.classifier import Classifier
from monitor.stories import ArticleFeatures, features_from_article, outlet_of


@dataclass(frozen=True, slots=True)
class ArticleState:
    """One article on its way through the stages: each stage returns a new state."""

    source: ArticleInput
    article: Article | None = None  # set by the extract stage
    page_error: str | None = None
    matches: tuple[TopicMatch, ...] = ()
    story_features: ArticleFeatures | None = None  # set by the story stage

    def extracted(self, needed_by: str) -> Article:
        """The article, for a stage that needs it (raises if no extract ran before)."""
        if self.article is None:
            raise RuntimeError(f"{needed_by} needs the extract stage before it")
        return self.article


class Stage(Protocol):
    """One step of the per-article work."""

    @property
    def name(self) -> str:
        """The key of its time in ``ProcessedArticle.timings``."""
        ...

    def __call__(self, state: ArticleState, /) -> ArticleState: ...


@dataclass(frozen=True, slots=True)
class Extract:
    """The article text from the page (or the feed summary), and its language."""

    name: str = "extract"

    def __call__(self, state: ArticleState, /) -> ArticleState:
        article, page_error = build_article(state.source)
        return replace(state, article=article, page_error=page_error)


@dataclass(frozen=True, slots=True)
class AnalyseAndMatch:
    """The article analysed in its language and matched against the rules."""

    classifier: Classifier
    name: str = "analyse_match"

    def __call__(self, state: ArticleState, /) -> ArticleState:
        matches = self.classifier.classify(state.extracted(f"stage {self.name!r}"))
        return replace(state, matches=tuple(matches))


@dataclass(frozen=True, slots=True)
class StoryFeatures:
    """What the story engine reads of the article (terms, fingerprint): CPU work, so here;
    the assignment itself runs in the main process, in order (``runtime/stories.py``)."""

    name: str = "story"

    def __call__(self, state: ArticleState, /) -> ArticleState:
        article = state.extracted(f"stage {self.name!r}")
        item = state.source.item
        features = features_from_article(article_key(item), article,
                                         source=outlet_of(article.url or item.link, state.source.feed_url))
        return replace(state, story_features=features)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs to build its stages (plain values: they cross to the pool)."""

    rule_files: tuple[Path, ...]
    spacy_model: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> WorkerSettings:
        return cls(rule_files=tuple(config.rule_files()), spacy_model=config.analysis.spacy_model)


def build_stages(settings: WorkerSettings) -> list[Stage]:
    """The stages every article goes through, in order."""
    classifier = Classifier.from_files(list(settings.rule_files), spacy_model=settings.spacy_model)
    return [Extract(), AnalyseAndMatch(classifier), StoryFeatures()]


def run_stages(source: ArticleInput, stages: Sequence[Stage]) -> ProcessedArticle:
    """Run ``source`` through ``stages`` in order, timing each."""
    state = ArticleState(source=source)
    timings: dict[str, float] = {}
    for stage in stages:
        started = time.perf_counter()
        state = stage(state)
        timings[stage.name] = time.perf_counter() - started
    return ProcessedArticle(
        item=source.item, article=state.extracted("a worker result"), matches=state.matches,
        page_error=state.page_error, timings=timings, story_features=state.story_features,
    )


_stages: list[Stage] | None = None  # one list per worker process (see module doc)


def init_worker(settings: WorkerSettings) -> None:
    global _stages
    _stages = build_stages(settings)


def process_in_worker(source: ArticleInput) -> ProcessedArticle:
    if _stages is None:
        raise RuntimeError("worker used before init_worker")
    return run_stages(source, _stages)


def parse_in_worker(job: tuple[bytes, dict[str, Any]]) -> ParsedFeed:
    """``parse_feed(content, **kwargs)`` for a big feed, in a worker process."""
    content, kwargs = job
    return parse_feed(content, **kwargs)
