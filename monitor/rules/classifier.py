"""The match stage: run every topic's rules over an analysed article.

:class:`Classifier` holds a rule set, the analysers (one per language) and the
optional learned second stage. An article is analysed in its own language and
matched with the rules compiled for that language (``matching.py``); only the
topics whose terms occurred are then evaluated (``evaluator.py``), and the
learned stage may veto or rescue a match near its threshold (``learned.py``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.analysis.analyser import AnalysedArticle, Analyser, Analysers
from monitor.models import Article, TopicMatch
from monitor.rules.compiled import RuleSet, Topic
from monitor.rules.embedding import Embedder
from monitor.rules.embedding import available as embeddings_available
from monitor.rules.evaluator import TopicEvaluator, TreeMemo, headline_copies, scope_problem
from monitor.rules.explanation import TopicExplanation, not_fired
from monitor.rules.features import topic_signals
from monitor.rules.learned import LearnedModel, model_path_for
from monitor.rules.matching import CompiledRules, Occurrence
from monitor.rules.ruleset import load_rules

log = logging.getLogger(__name__)


class Classifier:
    """Compiled rules + analysers; build once per process, reuse for every article.

    ``analysers`` is the registry that picks an article's analyser by its
    language; a single ``Analyser`` is taken as that language's, with the other
    supported languages built on first use. The fallback language's rules are
    compiled at once (so rule errors surface here); others on first use.
    """

    def __init__(self, ruleset: RuleSet, analysers: Analysers | Analyser | None = None, *,
                 learned: LearnedModel | str | None = "auto") -> None:
        self.ruleset = ruleset
        # The learned second stage: "auto" loads the model file beside the rule pack
        # when there is one (rules alone otherwise); None turns it off.
        self.learned: LearnedModel | None = None
        self.learned_path: Path | None = None
        if learned == "auto":
            self.learned, self.learned_path = _find_model(ruleset)
        elif isinstance(learned, LearnedModel):
            self.learned = learned
        if analysers is None:
            analysers = Analysers()
        elif isinstance(analysers, Analyser):
            analysers = Analysers.around(analysers)
        self.analysers = analysers
        self._memo = TreeMemo()
        self._compiled: dict[str, CompiledRules] = {}
        self._rules(analysers.fallback)
        # Inverted index: which topics a leaf can score for (only those are evaluated).
        self._leaf_topics: dict[int, list[int]] = defaultdict(list)
        for ti, topic in enumerate(ruleset.topics):
            for leaf in topic.leaf_ids:
                self._leaf_topics[leaf].append(ti)

    @classmethod
    def from_files(cls, paths: Sequence[Path] | Path, spacy_model: str | None = None) -> Classifier:
        return cls(load_rules(paths), Analysers.default(spacy_model))

    def __reduce__(self) -> tuple[Any, ...]:
        # spaCy matchers and re2 objects do not pickle; rebuild from the plain rule set.
        return (_rebuild, (self.ruleset, self.analysers, self.learned))

    @property
    def topics(self) -> list[Topic]:
        return self.ruleset.topics

    @property
    def analyser(self) -> Analyser:
        """The fallback language's analyser (English): articles of unknown language use it."""
        return self.analysers.get(self.analysers.fallback)

    def _rules(self, language: str) -> CompiledRules:
        """The rules compiled for a registered ``language`` (compiled on first use)."""
        rules = self._compiled.get(language)
        if rules is None:
            rules = self._compiled[language] = CompiledRules(
                self.ruleset, self.analysers.get(language))
        return rules

    def _occurrences(self, analysed: AnalysedArticle) -> dict[int, list[Occurrence]]:
        """Every leaf occurrence, by the rules compiled for the analysed article's language.

        A headline repeated as the body's first line (trafilatura keeps the page's
        <h1>) counts once, as the headline: its body copy's occurrences are dropped."""
        found = self._rules(analysed.language).occurrences(analysed)
        copies = headline_copies(analysed)
        if copies:
            for leaf in list(found):
                kept = [o for o in found[leaf] if o.field != "body" or o.sent not in copies]
                if kept:
                    found[leaf] = kept
                else:
                    del found[leaf]
        return found

    def _evaluator(self, topic: Topic, found: dict[int, list[Occurrence]],
                   analysed: AnalysedArticle) -> TopicEvaluator:
        return TopicEvaluator(topic, found, analysed, headline_copies=headline_copies(analysed),
                          memo=self._memo)

    def _second_stage(self, exps: list[TopicExplanation],
                      analysed: AnalysedArticle) -> list[TopicExplanation]:
        """The learned stage's verdict on each explained topic (when a model is loaded)."""
        model = self.learned
        if model is None or not model.judges(analysed.language):
            return exps
        ratios = {e.topic: min(4.0, e.score / e.threshold) if e.threshold else 0.0 for e in exps}
        wording: dict[str, float] | None = None
        out = []
        for exp in exps:
            tm = model.topics.get(exp.topic)
            if tm is None or exp.outcome is None:
                out.append(exp)
                continue
            signals = topic_signals(exp.outcome, analysed)
            signals.update({f"also:{t}": r for t, r in ratios.items() if t != exp.topic})
            if tm.uses_embedding and tm.consults(signals, exp.fired):
                # Embedded once per article, and only where the model has the say.
                if wording is None:
                    wording = Embedder.embed_analysed(analysed)
                signals.update(wording)
            verdict = tm.verdict(signals, exp.fired)
            if verdict.fired and not exp.fired:
                exp = replace(exp, fired=True, reasons=())
            elif exp.fired and not verdict.fired:
                exp = replace(exp, fired=False, reasons=(verdict.words(),))
            out.append(replace(exp, learned=verdict))
        return out

    def judge(self, article: Article, *, now: datetime | None = None) -> dict[str, set[str]]:
        """The topics that fire by rules alone ("rules") and, with a model loaded, with
        the learned stage ("both"): one analysis and one rule evaluation for both."""
        analysed = self.analyse(article)
        rules = self.explain_analysed(article, analysed, now=now, learned=False)
        out = {"rules": {e.topic for e in rules if e.fired}}
        if self.learned is not None:
            both = self._second_stage(rules, analysed)
            out["both"] = {e.topic for e in both if e.fired
                           and not scope_problem(self.ruleset.topic(e.topic), article, now)}
        return out

    def explain_analysed(self, article: Article, analysed: AnalysedArticle, *,
                         now: datetime | None = None, topic: str | None = None,
                         learned: bool = True) -> list[TopicExplanation]:
        """``explain`` on an article already analysed; ``learned=False``: rules alone."""
        found = self._occurrences(analysed)
        exps = [self._evaluator(t, found, analysed).explain() for t in self.ruleset.topics]
        if learned:
            exps = self._second_stage(exps, analysed)
        out = []
        for t, exp in zip(self.ruleset.topics, exps, strict=True):
            if topic is not None and t.id != topic:
                continue
            scope = scope_problem(t, article, now)
            out.append(not_fired(exp, scope) if scope else exp)
        return out

    # --- public API ------------------------------------------------------------------

    def analyse(self, article: Article) -> AnalysedArticle:
        """``article`` analysed by its language's analyser (or the fallback's); a missing or
        implausible language tag is checked against the text (``Analysers.analyse``)."""
        return self.analysers.analyse(article)

    def classify(self, article: Article, *, now: datetime | None = None) -> list[TopicMatch]:
        """The topics that fired on ``article``, each with its evidence."""
        return self.classify_analysed(article, self.analyse(article), now=now)

    def classify_analysed(
        self, article: Article, analysed: AnalysedArticle, *, now: datetime | None = None
    ) -> list[TopicMatch]:
        """``classify`` on an article already analysed (the analysis is the costly part)."""
        found = self._occurrences(analysed)
        candidates = sorted({ti for leaf in found for ti in self._leaf_topics.get(leaf, ())})
        exps = []
        for ti in candidates:
            topic = self.ruleset.topics[ti]
            if scope_problem(topic, article, now):
                continue
            exps.append(self._evaluator(topic, found, analysed).explain())
        # A topic none of whose terms occurred scores 0 for the learned stage too.
        return [e.to_match() for e in self._second_stage(exps, analysed) if e.fired]

    def explain(
        self, article: Article, *, now: datetime | None = None, topic: str | None = None
    ) -> list[TopicExplanation]:
        """Every topic (or just ``topic``), fired or not, with score, hits and reasons."""
        if topic is not None:
            self.ruleset.topic(topic)  # an unknown topic fails as it always did
        return self.explain_analysed(article, self.analyse(article), now=now, topic=topic)

    def check_examples(self) -> list[str]:
        """Run every topic's should_match / should_not_match texts; list the failures."""
        problems = []
        for t in self.ruleset.topics:
            for expect, examples in ((True, t.should_match), (False, t.should_not_match)):
                for n, ex in enumerate(examples, 1):
                    article = Article(title=ex.title, summary="", body=ex.text,
                                      text_source="page", url=None, language=ex.language)
                    exp = self.explain(article, topic=t.id)[0]  # scope does not apply
                    if exp.fired == expect:
                        continue
                    where = f"{t.path}:{ex.line}" if ex.line else t.where
                    kind = "should_match" if expect else "should_not_match"
                    if expect:
                        why = "; ".join(exp.reasons) or "did not fire"
                        msg = (f"{where}: topic {t.id}: {kind} example {n} should match but "
                               f"scored {exp.score:g} < {exp.threshold:g}" if
                               exp.score < exp.threshold else
                               f"{where}: topic {t.id}: {kind} example {n} should match "
                               f"but did not: {why}")
                    else:
                        terms = ", ".join(dict.fromkeys(h.term for h in exp.hits))
                        msg = (f"{where}: topic {t.id}: {kind} example {n} should not match "
                               f"but scored {exp.score:g} >= {exp.threshold:g} ({terms})")
                    problems.append(msg)
        return problems


def _rebuild(ruleset: RuleSet, analysers: Analysers, learned: LearnedModel | None) -> Classifier:
    return Classifier(ruleset, analysers, learned=learned)


def _find_model(ruleset: RuleSet) -> tuple[LearnedModel | None, Path | None]:
    """The model file beside the rule pack (``pack.model.json``), if one is there."""
    for rule_file in dict.fromkeys(Path(t.path) for t in ruleset.topics):
        path = model_path_for(rule_file)
        if not path.exists():
            continue
        try:
            model = LearnedModel.load(path)
        except ValueError as exc:
            log.warning("learned stage off: %s", exc)
            return None, None
        known = {t.id for t in ruleset.topics}
        model.topics = {k: v for k, v in model.topics.items() if k in known}
        if not embeddings_available():
            for topic in [k for k, v in model.topics.items() if v.uses_embedding]:
                log.warning("learned stage off for %s: its model reads sentence embeddings; "
                            "install newsmon[embeddings] (wordllama) to use it", topic)
                del model.topics[topic]
        return model, path
    return None, None
