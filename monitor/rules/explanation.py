"""What a topic judgement says: ``TopicExplanation`` and the words it is shown in.

``monitor.rules.evaluator`` walks the condition tree and scores; this module holds
its conclusion and the wording an analyst reads (the "why" line, a term as shown,
``**marked**`` evidence, the CLI's plain-text form). Pure: no spaCy, no walk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from monitor.analysis.languages import FALLBACK_LANGUAGE
from monitor.models import EvidenceSentence, TermHit, TopicMatch
from monitor.rules.features import RuleOutcome
from monitor.rules.learned import Verdict


@dataclass(frozen=True, slots=True)
class TopicExplanation:
    """Why a topic did or did not fire on one article."""

    topic: str
    name: str
    fired: bool
    score: float
    threshold: float
    distinct_terms: int
    min_terms: int
    severity: str = "normal"
    channels: tuple[str, ...] = ()
    hits: tuple[TermHit, ...] = ()
    evidence: tuple[EvidenceSentence, ...] = ()
    reasons: tuple[str, ...] = ()  # why not, and what was missing by how much (empty when fired)
    why: str = ""  # in words: where the topic was found and how strongly
    outcome: RuleOutcome | None = None  # the rules' findings, as the learned stage reads them
    learned: Verdict | None = None  # the learned stage's verdict, when a model is loaded
    language: str = FALLBACK_LANGUAGE  # whose analyser and compiled rules judged the article
    article_language: str | None = None  # the article's own language, if it gave one

    def to_match(self) -> TopicMatch:
        return TopicMatch(
            topic=self.topic, score=self.score, threshold=self.threshold,
            severity=self.severity, hits=self.hits, evidence=self.evidence,
            channels=self.channels, language=self.language,
            why="; ".join(w for w in (self.why, self.learned.words() if self.learned is not None
                                      and self.learned.decided_by == "model" else "") if w),
        )

    def format(self) -> str:
        """Plain-text explanation for the CLI."""
        verdict = "FIRED" if self.fired else "no match"
        lines = [
            f"{self.topic} ({self.name}): {verdict} — score {self.score:g} / threshold "
            f"{self.threshold:g}, {self.distinct_terms} distinct terms (min {self.min_terms}), "
            f"severity {self.severity}"
        ]
        if self.why:
            lines.append(f"  {'why' if self.fired else 'found'}: {self.why}")
        if self.learned is not None:
            lines.append(f"  {self.learned.words()}")
        lines += [f"  why not: {r}" for r in self.reasons]
        if self.article_language not in (None, self.language):
            lines.append(f"  language: {self.article_language!r} has no analyser; judged as "
                         f"{self.language!r}")
        if self.hits:
            per_term: dict[str, list[TermHit]] = defaultdict(list)
            for h in self.hits:
                per_term[h.term].append(h)
            lines.append("  terms:")
            for term, hs in per_term.items():
                where = ", ".join(f"{h.field}#{h.sentence}" for h in hs[:6])
                more = f" (+{len(hs) - 6})" if len(hs) > 6 else ""
                pts = sum(h.weight for h in hs)
                lines.append(f"    {term} ×{len(hs)} = {pts:g} pts [{where}{more}]")
        if self.evidence:
            lines.append("  evidence:")
            lines += [f"    [{e.field}] {e.marked}" for e in self.evidence]
        return "\n".join(lines)


_FIELD_WORDS = {"title": "in the headline", "summary": "in the summary", "lede": "in the lede"}


def shown_term(term: str, matched: str) -> str:
    """A rule term as an explanation shows it: as written, except a regex (``/…/``),
    which an analyst cannot read: its match is shown, quoted."""
    if len(term) > 2 and term.startswith("/") and term.endswith("/"):
        return f'"{" ".join(matched.split())}"'
    return term


def why_words(hits: Sequence[TermHit], threshold: float, base_threshold: float) -> str:
    """Where a topic was found, in words an analyst reads at a glance:
    "in the headline; 4 body sentences; threshold 3 raised for a long article"."""
    if not hits:
        return "no term of the topic in the article"
    parts = [words for f, words in _FIELD_WORDS.items() if any(h.field == f for h in hits)]
    body = len({h.sentence for h in hits if h.field == "body"})
    if body:
        more = " more" if any(h.field == "lede" for h in hits) else ""
        parts.append(f"{body}{more} body sentence{'s' if body != 1 else ''}")
    points: dict[str, float] = defaultdict(float)
    for h in hits:
        points[h.term] += h.weight
    top = sorted(points, key=lambda t: -points[t])[:4]
    parts.append("carried by " + ", ".join(top))
    if threshold > base_threshold:
        parts.append(f"threshold {threshold:g} raised from {base_threshold:g} for a long article")
    return "; ".join(parts)


def not_fired(exp: TopicExplanation, reason: str) -> TopicExplanation:
    return replace(exp, fired=False, reasons=(reason, *exp.reasons))


def mark(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """Wrap each (merged) character span of ``text`` in ``**``."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        s, e = max(0, s), min(len(text), e)
        if s >= e:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, pos = [], 0
    for s, e in merged:
        out += [text[pos:s], "**", text[s:e], "**"]
        pos = e
    out.append(text[pos:])
    return "".join(out)
