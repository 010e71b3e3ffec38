"""What the rules saw in one article, per topic, as numbers for the learned stage.

The rules already find every term, where it is (title, summary, lede, body),
which sentences and paragraphs it covers, which exclusions and context
requirements held; :func:`topic_signals` turns one topic's evaluation into a
fixed set of named features (nothing is re-matched). :data:`FEATURES` names them
in order, with the words an explanation uses for each, above or below the
training mean ("in the headline", "fewer body sentences"). Features are plain
floats, most log-scaled counts, so a linear model over them stays readable: each
weight says how much one more unit of that feature moves the verdict.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.analysis.analyser import AnalysedArticle
from monitor.models import TermHit

__all__ = ["BY_NAME", "FEATURES", "Feature", "RuleOutcome", "feature_names", "feature_words", "topic_signals"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: its name (in model files) and how an explanation says its value
    when above the training mean (``high``) or below it (``low``)."""

    name: str
    high: str
    low: str

    def words(self, above_mean: bool) -> str:
        return self.high if above_mean else self.low


FEATURES: tuple[Feature, ...] = (
    Feature("rules_fired", "the rules fired", "the rules did not fire"),
    Feature("score_ratio", "a high score for the threshold", "a low score for the threshold"),
    Feature("log_score", "a high rule score", "a low rule score"),
    Feature("distinct_terms", "more distinct terms", "fewer distinct terms"),
    Feature("title_hits", "in the headline", "not in the headline"),
    Feature("lede_hits", "in the summary or lede", "not in the lede"),
    Feature("body_sentences", "more body sentences", "fewer body sentences"),
    Feature("body_paragraphs", "more paragraphs", "fewer paragraphs"),
    Feature("body_share", "more of the body on the topic", "less of the body on the topic"),
    Feature("first_position", "first mention late in the body", "first mention early"),
    Feature("spread", "mentions spread through the body", "mentions in one place"),
    Feature("densest_sentence", "several terms in one sentence", "one term a sentence"),
    Feature("excluded", "an exclusion held", "no exclusion held"),
    Feature("required_met", "context requirements met", "context requirements unmet"),
    Feature("context_mentions", "the war named often", "the war named rarely"),
    Feature("excepted", "mentions dropped as another story's", "no mention of another story"),
    Feature("length", "a long article", "a short article"),
    Feature("threshold_raised", "threshold raised for length", "threshold not raised"),
)
BY_NAME = {f.name: f for f in FEATURES}
_NAMES = tuple(f.name for f in FEATURES)


def feature_names(topics: Sequence[str] = ()) -> tuple[str, ...]:
    """The features of one topic, then each other topic's score ratio (``also:ID``):
    a ceasefire story is often a negotiation story too."""
    return _NAMES + tuple(f"also:{t}" for t in topics)


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one topic's rule evaluation found, as the classifier hands it over."""

    fired: bool
    score: float
    threshold: float
    base_threshold: float
    hits: tuple[TermHit, ...]
    require_met: tuple[bool, ...] = ()
    require_hits: int = 0  # occurrences behind the require conditions (the war named)
    excluded: int = 0  # exclude conditions that held
    excepted: int = 0  # occurrences dropped by except_near (another story's mention)


def feature_words(name: str, above_mean: bool) -> str:
    """How an explanation says a feature's value ("in the headline", "a long article")."""
    feature = BY_NAME.get(name)
    if feature is not None:
        return feature.words(above_mean)
    if name.startswith("also:"):  # another topic's score ratio
        return f"{'a strong' if above_mean else 'a weak'} {name[5:]} score"
    return name


def _log(n: float) -> float:
    return math.log1p(max(0.0, n))


def _paragraph_starts(text: str) -> list[int]:
    starts = [0]
    pos = text.find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def topic_signals(outcome: RuleOutcome, analysed: AnalysedArticle) -> dict[str, float]:
    """The named features of one topic on one article (see :data:`FEATURES`)."""
    body = analysed.field("body")
    n_sentences = max(1, len(body.sent_starts)) if body is not None else 1
    body_words = body.word_pos(len(body.doc)) if body is not None else 0
    title = lede = 0
    sentences: set[int] = set()
    per_sentence: dict[tuple[str, int], set[str]] = {}
    for h in outcome.hits:
        per_sentence.setdefault((h.field, h.sentence), set()).add(h.term)
        if h.field == "title":
            title += 1
        elif h.field in ("summary", "lede"):
            lede += 1
        if h.field in ("lede", "body"):
            sentences.add(h.sentence)
    paragraphs: set[int] = set()
    if body is not None and sentences:
        starts = _paragraph_starts(body.text)
        for s in sentences:
            char = body.doc[body.sent_starts[s]].idx if s < len(body.sent_starts) else 0
            paragraphs.add(bisect_right(starts, char) - 1)
    first = min(sentences) / n_sentences if sentences else 1.0
    spread = (max(sentences) - min(sentences)) / n_sentences if sentences else 0.0
    met = outcome.require_met
    return {
        "rules_fired": float(outcome.fired),
        "score_ratio": min(4.0, outcome.score / outcome.threshold) if outcome.threshold else 0.0,
        "log_score": _log(outcome.score),
        "distinct_terms": _log(len({h.term for h in outcome.hits})),
        "title_hits": _log(title),
        "lede_hits": _log(lede),
        "body_sentences": _log(len(sentences)),
        "body_paragraphs": _log(len(paragraphs)),
        "body_share": len(sentences) / n_sentences,
        "first_position": first,
        "spread": spread,
        "densest_sentence": _log(max((len(v) for v in per_sentence.values()), default=0)),
        "excluded": float(outcome.excluded),
        "required_met": sum(met) / len(met) if met else 1.0,
        "context_mentions": _log(outcome.require_hits),
        "excepted": _log(outcome.excepted),
        "length": _log(body_words / 1000),
        "threshold_raised": outcome.threshold - outcome.base_threshold,
    }
