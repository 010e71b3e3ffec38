"""Scoring story clusters and near-duplicates against a labelled file (``stories-dev.jsonl``).

``evaluate_clusters`` is pairwise: every pair of articles the gold puts in one
story is a positive (singletons make none), every pair the assigner put in one
story is a prediction. Near-duplicates are scored as directed links
(copy → fuller text), and also undirected.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monitor.stories.clustering import (
    InMemoryStoryIndex,
    InMemoryTermStatistics,
    StoryAssigner,
    StoryConfig,
)
from monitor.stories.features import ArticleFeatures, extract_features


@dataclass(frozen=True, slots=True)
class PairScores:
    true_positives: int
    predicted: int
    actual: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.actual if self.actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self) -> str:
        return (f"P {self.precision:.3f}  R {self.recall:.3f}  F1 {self.f1:.3f}  "
                f"({self.true_positives} of {self.predicted} predicted, {self.actual} labelled)")


@dataclass(frozen=True, slots=True)
class Evaluation:
    pairs: PairScores  # "same story"
    near_dups: PairScores  # directed copy → fuller links
    near_dups_undirected: PairScores
    articles: int
    stories_predicted: int  # clusters of 2+ articles


def _same_cluster_pairs(clusters: Mapping[str, str | None]) -> set[frozenset[str]]:
    members: defaultdict[str, list[str]] = defaultdict(list)
    for article_id, cluster in clusters.items():
        if cluster is not None:
            members[cluster].append(article_id)
    return {frozenset(pair) for group in members.values() for pair in itertools.combinations(group, 2)}


def evaluate_clusters(predicted: Mapping[str, str], gold: Mapping[str, str | None],
                      predicted_dups: Mapping[str, str] | None = None,
                      gold_dups: Mapping[str, str] | None = None) -> Evaluation:
    """Pairwise precision/recall of ``predicted`` (article → story) against ``gold`` (story or None).

    Only articles in ``gold`` are scored; dups map copy → fuller article.
    """
    scored = {a: predicted[a] for a in gold if a in predicted}
    predicted_pairs = _same_cluster_pairs(dict(scored))
    gold_pairs = _same_cluster_pairs(gold)
    pairs = PairScores(len(predicted_pairs & gold_pairs), len(predicted_pairs), len(gold_pairs))
    p_dups = {(c, f) for c, f in (predicted_dups or {}).items() if c in gold}
    g_dups = set((gold_dups or {}).items())
    directed = PairScores(len(p_dups & g_dups), len(p_dups), len(g_dups))
    p_undirected = {frozenset(p) for p in p_dups}
    g_undirected = {frozenset(p) for p in g_dups}
    undirected = PairScores(len(p_undirected & g_undirected), len(p_undirected), len(g_undirected))
    sizes: defaultdict[str, int] = defaultdict(int)
    for story in scored.values():
        sizes[story] += 1
    return Evaluation(pairs=pairs, near_dups=directed, near_dups_undirected=undirected,
                      articles=len(scored), stories_predicted=sum(1 for n in sizes.values() if n > 1))


# --- the labelled file ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledArticle:
    features: ArticleFeatures
    story: str | None
    near_dup_of: str | None
    text: str


def _date(value: str) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None


def load_labelled(path: Path) -> list[LabelledArticle]:
    """The file's articles in date order (the order the daemon would see them), then by id."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: (r.get("date") or "9999", r["id"]))
    out = []
    for row in rows:
        features = extract_features(row["id"], row.get("title") or "", row.get("text") or "",
                                    source=row.get("source") or "", published=_date(row.get("date") or ""))
        out.append(LabelledArticle(features=features, story=row.get("story"),
                                   near_dup_of=row.get("near_dup_of"),
                                   text=row.get("text") or ""))
    return out


def run_assigner(articles: Sequence[LabelledArticle], config: StoryConfig | None = None, *,
                 prime_idf: Iterable[ArticleFeatures] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Assign ``articles`` in order; returns (article → story, copy → fuller).

    ``prime_idf``: documents counted into the IDF first, as the stored corpus would be
    (only their words: no labels). Without it the IDF is learnt online from scratch.
    """
    statistics = InMemoryTermStatistics()
    for features in prime_idf or ():
        statistics.add_document(itertools.chain(features.head_terms, features.body_terms))
    assigner = StoryAssigner(InMemoryStoryIndex(), statistics, config=config)
    stories: dict[str, str] = {}
    dups: dict[str, str] = {}
    for item in articles:
        seen = item.features.published or datetime(2000, 1, 1, tzinfo=UTC)
        result = assigner.assign(item.features, now=seen)
        stories[item.features.article_id] = result.story_id
        if result.near_dup_of:
            dups[item.features.article_id] = result.near_dup_of
        if result.duplicated_by:
            dups[result.duplicated_by] = item.features.article_id
    return stories, dups


def evaluate_file(articles: Sequence[LabelledArticle], config: StoryConfig | None = None, *,
                  prime: bool = True) -> Evaluation:
    corpus = [a.features for a in articles] if prime else None
    stories, dups = run_assigner(articles, config, prime_idf=corpus)
    gold = {a.features.article_id: a.story for a in articles}
    gold_dups = {a.features.article_id: a.near_dup_of for a in articles if a.near_dup_of}
    return evaluate_clusters(stories, gold, dups, gold_dups)
