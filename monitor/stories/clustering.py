"""Online story assignment: each arriving article joins a story of the last days or opens one.

The assigner is pure logic over two small Protocols, so storage can persist its
state later without the stage knowing how:

* ``StoryIndex``: stories, the recent articles' vectors and fingerprints, and an
  inverted index from distinctive terms to recent articles (time-bounded lookups);
* ``TermStatistics``: document frequencies, for the IDF weights.

``InMemoryStoryIndex`` and ``InMemoryTermStatistics`` implement them here. The
clock is injected (``StoryAssigner(clock=...)`` or ``assign(..., now=...)``).

An article's vector is TF-IDF over its terms, the headline and lede counting
``head_weight`` times the body (an article belongs to the event of its headline
and lede). Candidates are the recent articles sharing its most distinctive terms
within ``window`` of its time (published, else seen); a story's score is the
cosine of the article with the story's centroid. A near-duplicate of a candidate
joins that candidate's story whatever the score (a wire copy under a new headline).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from monitor.stories.features import ArticleFeatures
from monitor.stories.fingerprint import Fingerprint, near_duplicate

Vector = dict[str, float]


@dataclass(frozen=True, slots=True)
class StoryConfig:
    """The assigner's knobs; only ``threshold``, ``head_weight`` and ``day_penalty`` were tuned.

    See docs/stories.md for how (and the held-out figures).
    """

    window: timedelta = timedelta(days=2)  # "the same event, reported within two days"
    threshold: float = 0.20  # score (cosine with a story's centroid, less the day penalty) needed to join it
    head_weight: float = 3.0  # headline + lede term weight relative to the body
    # Events on one topic a day apart (a bid, then a veto, then a vote) share their vocabulary; the
    # same event's reports are mostly from the same day.
    day_penalty: float = 0.10  # subtracted from the score per day between the article and the story's start
    vector_terms: int = 80  # terms kept in an article's vector (the heaviest)
    query_terms: int = 24  # of those, looked up in the inverted index
    candidate_articles: int = 40  # recent articles considered at most (their stories are scored)
    near_dup_candidates: int = 10  # of those, the ones sharing most terms are checked for a copy
    busy_term_postings: int = 400  # a term on more recent articles than this is not distinctive: skipped
    centroid_terms: int = 160  # terms kept in a story's centroid
    future_tolerance: timedelta = timedelta(days=1)  # a published date further ahead than this: not believed


# --- state (plain dataclasses, so storage can persist them) -------------------------------------


@dataclass(slots=True)
class StoredArticle:
    """What the assigner keeps of an article while it can still join stories (about ``2 * window``)."""

    article_id: str
    story_id: str
    event_time: datetime  # published, else seen (UTC)
    headline: str
    source: str
    vector: Vector  # L2-normalised TF-IDF, ``vector_terms`` heaviest terms
    fingerprint: Fingerprint


@dataclass(slots=True)
class Story:
    story_id: str
    label: str  # the most representative headline (the medoid member's)
    label_article_id: str
    first_seen: datetime  # earliest member event time
    last_seen: datetime  # latest member event time
    member_ids: list[str] = field(default_factory=list)
    outlets: list[str] = field(default_factory=list)  # distinct, in order of arrival
    centroid: Vector = field(default_factory=dict)  # sum of member vectors, ``centroid_terms`` heaviest
    centroid_norm: float = 1.0  # its L2 norm, kept so scoring a story costs one pass over the article


@dataclass(frozen=True, slots=True)
class Assignment:
    """The assigner's answer for one article: the pipeline stores it and delivery reads it."""

    article_id: str
    story_id: str
    is_new_story: bool
    similarity: float  # cosine with the joined story's centroid (1.0 for a new story)
    near_dup_of: str | None = None  # the fuller text this article copies, if any
    duplicated_by: str | None = None  # an earlier article that turns out to copy this fuller one
    exact_duplicate: bool = False
    new_outlet: bool = True  # the story had no article from this outlet yet
    label_changed: bool = False  # the story's label headline is now a different one
    label: str = ""

    @property
    def changed_materially(self) -> bool:
        """Worth an update to whoever follows the story: new, or a new outlet's own write-up."""
        copy = self.near_dup_of is not None or self.duplicated_by is not None
        return self.is_new_story or (self.new_outlet and not copy)


# --- what the assigner needs of storage ----------------------------------------------------------


class StoryIndex(Protocol):
    def new_story_id(self) -> str: ...

    def story(self, story_id: str) -> Story | None: ...

    def save_story(self, story: Story) -> None: ...

    def article(self, article_id: str) -> StoredArticle | None: ...

    def add_article(self, article: StoredArticle, index_terms: Sequence[str]) -> None: ...

    def candidates(self, terms: Sequence[str], since: datetime, until: datetime,
                   limit: int, busy: int) -> list[str]:
        """Recent article ids (event time in [since, until]) sharing the most of ``terms``, best first.

        A term on more than ``busy`` articles in the range is passed over (not distinctive there).
        """
        ...


class TermStatistics(Protocol):
    def idf(self, term: str) -> float: ...

    def add_document(self, terms: Iterable[str]) -> None: ...


# --- in-memory implementations -----------------------------------------------------------------


class InMemoryTermStatistics:
    """Document frequencies learnt online (``add_document``) or primed from a stored corpus."""

    def __init__(self) -> None:
        self.documents = 0
        self.frequency: Counter[str] = Counter()

    def idf(self, term: str) -> float:
        # Smoothed: an unseen term is as distinctive as the rarest, never infinite.
        return math.log((self.documents + 1) / (self.frequency.get(term, 0) + 1)) + 1.0

    def add_document(self, terms: Iterable[str]) -> None:
        self.documents += 1
        self.frequency.update(set(terms))


class InMemoryStoryIndex:
    """Dicts and time-sorted posting lists; ``prune`` drops articles too old to join anything."""

    def __init__(self) -> None:
        self._stories: dict[str, Story] = {}
        self._articles: dict[str, StoredArticle] = {}
        self._postings: defaultdict[str, list[tuple[float, str]]] = defaultdict(list)
        self._ids = itertools.count(1)

    def new_story_id(self) -> str:
        return f"story-{next(self._ids):06d}"

    def story(self, story_id: str) -> Story | None:
        return self._stories.get(story_id)

    def save_story(self, story: Story) -> None:
        self._stories[story.story_id] = story

    def article(self, article_id: str) -> StoredArticle | None:
        return self._articles.get(article_id)

    def add_article(self, article: StoredArticle, index_terms: Sequence[str]) -> None:
        self._articles[article.article_id] = article
        key = (article.event_time.timestamp(), article.article_id)
        for term in index_terms:
            bisect.insort(self._postings[term], key)  # appends in the usual (date-ordered) case

    def candidates(self, terms: Sequence[str], since: datetime, until: datetime,
                   limit: int, busy: int) -> list[str]:
        low, high = since.timestamp(), until.timestamp()
        shared: defaultdict[str, float] = defaultdict(float)
        for rank, term in enumerate(terms):
            postings = self._postings.get(term)
            if not postings:
                continue
            start = bisect.bisect_left(postings, (low, ""))
            end = bisect.bisect_right(postings, (high, "\uffff"))
            if end - start > busy:
                continue
            weight = 1.0 / (1 + rank * 0.1)  # the query's heavier terms count more
            for _, article_id in postings[start:end]:
                shared[article_id] += weight
        best = heapq.nlargest(limit, shared.items(), key=lambda item: item[1])
        return [article_id for article_id, _ in best]

    def prune(self, before: datetime) -> int:
        """Forget articles, postings and stories last seen before ``before`` (storage keeps them)."""
        cutoff = before.timestamp()
        for term in list(self._postings):
            postings = self._postings[term]
            cut = bisect.bisect_left(postings, (cutoff, ""))
            if cut:
                del postings[:cut]
            if not postings:
                del self._postings[term]
        old = [a for a, stored in self._articles.items() if stored.event_time.timestamp() < cutoff]
        for article_id in old:
            del self._articles[article_id]
        for story_id in [k for k, story in self._stories.items() if story.last_seen.timestamp() < cutoff]:
            del self._stories[story_id]
        return len(old)

    def __len__(self) -> int:
        return len(self._articles)


# --- the assigner -----------------------------------------------------------------------------


def cosine(unit: Vector, other: Vector, other_norm: float | None = None) -> float:
    """Cosine of a unit-length vector with another (whose norm is computed unless given)."""
    get = other.get
    dot = sum(weight * get(term, 0.0) for term, weight in unit.items())
    norm = other_norm if other_norm is not None else math.sqrt(sum(w * w for w in other.values()))
    return dot / norm if norm else 0.0


def _normalised(weights: dict[str, float], keep: int) -> Vector:
    top = heapq.nlargest(keep, weights.items(), key=lambda item: item[1]) if len(weights) > keep \
        else list(weights.items())
    norm = math.sqrt(sum(w * w for _, w in top))
    return {term: w / norm for term, w in top} if norm else {}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _system_clock() -> datetime:
    return datetime.now(UTC)


class StoryAssigner:
    def __init__(self, index: StoryIndex, statistics: TermStatistics, *,
                 config: StoryConfig | None = None, clock: Callable[[], datetime] = _system_clock) -> None:
        self.index = index
        self.statistics = statistics
        self.config = config or StoryConfig()
        self.clock = clock

    def event_time(self, features: ArticleFeatures, now: datetime) -> datetime:
        """Published time when believable (not far ahead of the clock), else the time seen."""
        if features.published is not None:
            published = _utc(features.published)
            if published <= now + self.config.future_tolerance:
                return published
        return now

    def vector(self, features: ArticleFeatures) -> Vector:
        head_weight = self.config.head_weight
        weights: dict[str, float] = {}
        for term, count in features.head_terms.items():
            weights[term] = head_weight * (1.0 + math.log(count))
        for term, count in features.body_terms.items():
            weights[term] = weights.get(term, 0.0) + 1.0 + math.log(count)
        idf = self.statistics.idf
        return _normalised({t: w * idf(t) for t, w in weights.items()}, self.config.vector_terms)

    def assign(self, features: ArticleFeatures, now: datetime | None = None) -> Assignment:
        now = _utc(now or self.clock())
        config = self.config
        when = self.event_time(features, now)
        vector = self.vector(features)
        query = list(vector)[: config.query_terms] if len(vector) <= config.query_terms else \
            [t for t, _ in heapq.nlargest(config.query_terms, vector.items(), key=lambda i: i[1])]
        candidate_ids = self.index.candidates(query, when - config.window, when + config.window,
                                              config.candidate_articles, config.busy_term_postings)
        candidates = [a for a in map(self.index.article, candidate_ids) if a is not None]

        near_dup_of, duplicated_by, exact, dup_story = self._near_duplicates(
            features.fingerprint, candidates[: config.near_dup_candidates])
        best_story: Story | None = None
        best_score = 0.0
        seen_stories: set[str] = set()
        for candidate in candidates:
            if candidate.story_id in seen_stories:
                continue
            seen_stories.add(candidate.story_id)
            story = self.index.story(candidate.story_id)
            if story is None or abs(when - story.first_seen) > config.window:
                continue
            gap_days = abs((when - story.first_seen).total_seconds()) / 86400
            score = cosine(vector, story.centroid, story.centroid_norm) - config.day_penalty * gap_days
            if score > best_score:
                best_story, best_score = story, score
        if dup_story is not None and (best_story is None or best_story.story_id != dup_story.story_id
                                      or best_score < config.threshold):
            best_story, best_score = dup_story, cosine(vector, dup_story.centroid, dup_story.centroid_norm)
        elif best_score < config.threshold:
            best_story = None

        stored = StoredArticle(article_id=features.article_id, story_id="", event_time=when,
                               headline=features.headline, source=features.source, vector=vector,
                               fingerprint=features.fingerprint)
        if best_story is None:
            story = Story(story_id=self.index.new_story_id(), label=features.headline,
                          label_article_id=features.article_id, first_seen=when, last_seen=when,
                          member_ids=[features.article_id],
                          outlets=[features.source] if features.source else [],
                          centroid=dict(vector), centroid_norm=1.0)
            stored.story_id = story.story_id
            self._store(stored, story, query, features)
            return Assignment(article_id=features.article_id, story_id=story.story_id, is_new_story=True,
                              similarity=1.0, near_dup_of=near_dup_of, duplicated_by=duplicated_by,
                              exact_duplicate=exact, label=story.label)

        story = best_story
        new_outlet = bool(features.source) and features.source not in story.outlets
        stored.story_id = story.story_id
        story = self._joined(story, stored)
        label_changed = story.label != best_story.label
        self._store(stored, story, query, features)
        return Assignment(article_id=features.article_id, story_id=story.story_id, is_new_story=False,
                          similarity=round(best_score, 4), near_dup_of=near_dup_of,
                          duplicated_by=duplicated_by,
                          exact_duplicate=exact, new_outlet=new_outlet, label_changed=label_changed,
                          label=story.label)

    def _near_duplicates(self, fp: Fingerprint, candidates: Sequence[StoredArticle]
                         ) -> tuple[str | None, str | None, bool, Story | None]:
        """The best near-duplicate among the candidates: (near_dup_of, duplicated_by, exact, its story)."""
        best: tuple[float, StoredArticle, bool, bool] | None = None
        for candidate in candidates:
            found = near_duplicate(fp, candidate.fingerprint)
            if found is not None and (best is None or found.containment > best[0]):
                best = (found.containment, candidate, found.copy_is_first, found.exact)
        if best is None:
            return None, None, False, None
        _, other, this_is_copy, exact = best
        story = self.index.story(other.story_id)
        if this_is_copy:
            return other.article_id, None, exact, story
        return None, other.article_id, exact, story

    def _joined(self, story: Story, stored: StoredArticle) -> Story:
        centroid = dict(story.centroid)
        for term, weight in stored.vector.items():
            centroid[term] = centroid.get(term, 0.0) + weight
        if len(centroid) > self.config.centroid_terms:
            centroid = dict(heapq.nlargest(self.config.centroid_terms, centroid.items(), key=lambda i: i[1]))
        outlets = list(story.outlets)
        if stored.source and stored.source not in outlets:
            outlets.append(stored.source)
        joined = replace(story, member_ids=[*story.member_ids, stored.article_id], outlets=outlets,
                         first_seen=min(story.first_seen, stored.event_time),
                         last_seen=max(story.last_seen, stored.event_time), centroid=centroid,
                         centroid_norm=math.sqrt(sum(w * w for w in centroid.values())))
        label_id, label = self._medoid(joined, stored)
        joined.label, joined.label_article_id = label, label_id
        return joined

    def _medoid(self, story: Story, newest: StoredArticle) -> tuple[str, str]:
        """The member closest to the centroid (the most representative headline)."""
        best_id, best_label, best_score = story.label_article_id, story.label, -1.0
        for member_id in story.member_ids[-50:]:  # a huge story's label settles among its latest
            member = newest if member_id == newest.article_id else self.index.article(member_id)
            if member is None:
                continue
            score = cosine(member.vector, story.centroid, story.centroid_norm)
            if score > best_score + 1e-9:
                best_id, best_label, best_score = member.article_id, member.headline, score
        return best_id, best_label

    def _store(self, stored: StoredArticle, story: Story, query: Sequence[str],
               features: ArticleFeatures) -> None:
        self.index.save_story(story)
        self.index.add_article(stored, query)
        self.statistics.add_document(itertools.chain(features.head_terms, features.body_terms))
