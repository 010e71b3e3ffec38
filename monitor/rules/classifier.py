"""The match stage: run every topic's rules over an analysed article.

All terms of all topics are compiled once into shared spaCy matchers (one
``PhraseMatcher`` per match attribute), so an article is scanned once whatever
the number of rules; only the topics whose terms occurred are then evaluated.
Matchers are bound to one pipeline's vocabulary, so the rules are compiled once
per language (on its first article) against that language's analyser, and an
article is analysed and matched in its own language (see ``Analysers``).
Wildcard terms are tested against each distinct word of a field, not each token
(see ``_WildcardIndex``). Regex leaves run through re2 (linear time), entity
leaves read ``doc.ents``.

Scoring (EMM-style): each occurrence of a scoring term adds
``term weight × group weights × field weight`` (title, summary, lede, body);
a topic fires when the score reaches its threshold, enough distinct terms
occurred, every ``require`` condition holds, no ``exclude`` condition holds and
the article is in the topic's scope.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from spacy.attrs import LOWER, NORM, ORTH
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from monitor.analysis.analyser import AnalysedArticle, Analyser, Analysers, FieldText
from monitor.analysis.languages import FALLBACK_LANGUAGE
from monitor.models import Article, EvidenceSentence, TermHit, TopicMatch
from monitor.rules.features import RuleOutcome, topic_signals
from monitor.rules.learned import LearnedModel, Verdict, model_path_for
from monitor.rules.ruleset import LeafSpec, Node, RuleSet, Topic, compile_regex, load_rules

log = logging.getLogger(__name__)

MAX_REGEX_MATCHES = 500  # per regex and field: bounds the work a greedy pattern can cause
MAX_EVIDENCE = 3
_FIELD_ORDER = {"title": 0, "summary": 1, "lede": 2, "body": 3}
_WILD_CHARS = r"[\w'’.\-]*"
# Longer "words" (a 288,000-character run) never match a wildcard. An atom has at
# most MAX_WILDCARD_STARS stars (``check`` refuses more), so its backtracking on a
# word is bounded by MAX_WILD_WORD ** (stars + 1) steps: under 1 ms per word,
# where a 3-star term on one 7 KB word took 8.1 s. (Python re, not re2: re2's
# case folding differs from the Matcher's for "İ", "ß" and the Kelvin sign.)
MAX_WILD_WORD = 64
_WILD_MARK = "zqxwildzqx"  # stands in for "*" while a wildcard term is tokenised
_WILD_COLS = (ORTH, LOWER, NORM)  # columns of the token array multi-token wildcards test
_ATOM = -1  # a _Slot column: the token must match a wildcard atom
MAX_WILD_MEMO = 50_000  # words remembered per classifier (~4 MB); cleared when full
# One token of a compiled wildcard term: (column in _WILD_COLS, hash) for a
# literal token, (_ATOM, atom id) for a wildcard token.
_Slot = tuple[int, int]


@dataclass(frozen=True, slots=True)
class _WildToken:
    """A token of a term with ``*`` in it: the literal parts around the stars."""

    parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where one leaf matched: field, sentence, token and character spans."""

    leaf: int
    field: str  # title | summary | body (the lede is decided per topic)
    sent: int
    start: int
    end: int
    cstart: int
    cend: int
    text: str


@dataclass(frozen=True, slots=True)
class _Hit:
    occ: Occurrence
    term: str
    weight: float  # 0 for proximity partners: marked as evidence, not scored
    src: int = 0  # id() of the node that scored it: the same span scores once per node


@dataclass(frozen=True, slots=True)
class _Result:
    ok: bool
    hits: tuple[_Hit, ...] = ()


_FAIL = _Result(False)
_EMPTY_OK = _Result(True)  # a leaf with min_count 0 and nothing found
_Ctx = tuple[frozenset[str] | None, tuple[tuple[Node, int | None], ...]]
_NO_CTX: _Ctx = (None, ())


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


class _WildcardIndex:
    """Wildcard terms, matched per distinct word rather than per token.

    A spaCy ``Matcher`` with one regex per wildcard tests every token against
    every pattern. Here each wildcard token ("negotiat*", the "fire*" of
    "cease-fire*") is an *atom* with the same regex the Matcher used; a word's
    atoms are found once (only atoms whose literal start agrees with the word's
    first two characters are tried) and memoised by ORTH hash, so the cost per
    field is one dict look-up per distinct word. Several atoms may match one
    word; each fires. Terms of several tokens are then checked with numpy over
    the token arrays, at the positions where their atoms matched.
    """

    def __init__(self, vocab: Any) -> None:
        self._strings = vocab.strings
        self.atoms: list[re.Pattern[str]] = []
        self._atom_ids: dict[tuple[bool, tuple[str, ...]], int] = {}
        # Candidate atoms by a word's first two characters: exact for case-
        # sensitive atoms, lower-cased (ASCII only, see _atoms_of) otherwise.
        self._exact: dict[str, list[int]] = defaultdict(list)
        self._folded: dict[str, list[int]] = defaultdict(list)
        self._folded_all: list[int] = []
        self._always: list[int] = []  # no usable literal start: tried on every word
        self.single: dict[int, list[int]] = defaultdict(list)  # atom -> single-token leaves
        # Multi-token terms (leaf, slots), filed under their first atom.
        self.multi: dict[int, list[tuple[int, tuple[_Slot, ...]]]] = defaultdict(list)
        self._memo: dict[int, tuple[int, ...]] = {}  # ORTH hash -> matching atoms

    def __len__(self) -> int:
        return len(self.atoms)

    def add(self, leaf: int, tokens: list[_Slot | _WildToken], case: bool) -> None:
        """Add the term of ``leaf``: its literal and wildcard tokens, in order."""
        compiled = [(_ATOM, self._atom(case, t.parts)) if isinstance(t, _WildToken) else t
                    for t in tokens]
        if len(compiled) == 1:
            self.single[compiled[0][1]].append(leaf)
        else:
            first = next(v for c, v in compiled if c == _ATOM)
            self.multi[first].append((leaf, tuple(compiled)))

    def _atom(self, case: bool, parts: tuple[str, ...]) -> int:
        found = self._atom_ids.get((case, parts))
        if found is not None:
            return found
        # The very regex the Matcher used (and tested with .search, as it did); bounded by
        # the word cap in _atoms_of.
        rx = "^" + _WILD_CHARS.join(re.escape(p) for p in parts) + "$"
        atom = self._atom_ids[(case, parts)] = len(self.atoms)
        self.atoms.append(re.compile(rx if case else "(?i)" + rx))
        head = parts[0][:2]
        if len(head) < 2:
            self._always.append(atom)
        elif case:
            self._exact[head].append(atom)
        elif head.isascii():
            self._folded[head.lower()].append(atom)
            self._folded_all.append(atom)
        else:
            self._always.append(atom)
        return atom

    def _atoms_of(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WILD_WORD:
            return ()
        head = word[:2]
        cands = self._exact.get(head, []) + self._always
        if head.isascii():
            # Between ASCII characters, re's IGNORECASE is exactly lower(); a
            # non-ASCII head ("İran", "ſ", the Kelvin sign) may still fold onto
            # an ASCII letter, so it tries every case-insensitive atom.
            cands += self._folded.get(head.lower(), [])
        else:
            cands += self._folded_all
        return tuple(sorted(a for a in set(cands) if self.atoms[a].search(word)))

    def find(self, doc: Doc) -> list[tuple[int, int, int]]:
        """(leaf, start, end) of every wildcard term in ``doc``, per leaf in order."""
        if not self.atoms or not len(doc):
            return []
        cols = doc.to_array(list(_WILD_COLS)).reshape(len(doc), len(_WILD_COLS))
        orths = cols[:, 0].tolist()
        memo = self._memo
        if len(memo) > MAX_WILD_MEMO:
            memo.clear()
        hits: dict[int, tuple[int, ...]] = {}
        for orth in set(orths):
            atoms = memo.get(orth)
            if atoms is None:
                atoms = memo[orth] = self._atoms_of(self._strings[orth])
            if atoms:
                hits[orth] = atoms
        if not hits:
            return []
        out: list[tuple[int, int, int]] = []
        single = self.single
        if single:
            found = np.fromiter(hits, dtype=np.uint64, count=len(hits))
            for i in np.flatnonzero(np.isin(cols[:, 0], found)).tolist():
                for atom in hits[orths[i]]:
                    out.extend((leaf, i, i + 1) for leaf in single.get(atom, ()))
        matched = {a for atoms in hits.values() for a in atoms}
        masks: dict[int, np.ndarray] = {}  # atom -> tokens it matched, built on demand
        for first in matched:
            for leaf, slots in self.multi.get(first, ()):
                if any(c == _ATOM and v not in matched for c, v in slots):
                    continue
                out.extend((leaf, s, s + len(slots))
                           for s in _starts(cols, slots, hits, masks))
        return out


def _starts(cols: np.ndarray, slots: tuple[_Slot, ...], hits: dict[int, tuple[int, ...]],
            masks: dict[int, np.ndarray]) -> list[int]:
    """Token positions where the consecutive ``slots`` all hold."""
    n, width = len(cols), len(slots)
    if width > n:
        return []
    ok = np.ones(n - width + 1, dtype=bool)
    for k, (col, value) in enumerate(slots):
        if col == _ATOM:
            mask = masks.get(value)
            if mask is None:
                words = np.array([o for o, a in hits.items() if value in a], dtype=np.uint64)
                mask = masks[value] = np.isin(cols[:, 0], words)
        else:
            mask = cols[:, col] == value
        ok &= mask[k:k + n - width + 1]
        if not ok.any():
            return []
    return np.flatnonzero(ok).tolist()


class _CompiledRules:
    """A rule set's terms compiled against one language's analyser (its vocab)."""

    def __init__(self, ruleset: RuleSet, analyser: Analyser) -> None:
        self.analyser = analyser
        self.language = analyser.language
        analyser.add_gazetteer(ruleset.gazetteer)
        nlp = analyser.nlp
        self._vocab = nlp.vocab
        self._phrase = {
            attr: PhraseMatcher(nlp.vocab, attr=attr) for attr in ("NORM", "LOWER", "ORTH")
        }
        self._wild = _WildcardIndex(nlp.vocab)
        self._key_leaf: dict[int, int] = {}
        self._regexes: list[tuple[int, Any]] = []
        self._entities: list[tuple[int, LeafSpec]] = []
        self._compile(ruleset.leaves)

    # --- compilation ---------------------------------------------------------------

    def _compile(self, leaves: list[LeafSpec]) -> None:
        norms = self.analyser.nlp.get_pipe("newsmon_norms")
        phrase_patterns: dict[str, list[tuple[str, Doc]]] = defaultdict(list)
        for i, leaf in enumerate(leaves):
            key = f"L{i}"
            text = _term_text(leaf, self.language)
            if text is None:
                continue  # another language's term: never looked for in this one's articles
            if leaf.kind == "regex":
                self._regexes.append((i, compile_regex(leaf.text, case=leaf.case)))
                continue
            if leaf.kind == "entity":
                self._entities.append((i, leaf))
                continue
            self._key_leaf[self._vocab.strings.add(key)] = i
            attr = "ORTH" if leaf.case else ("NORM" if leaf.lemma else "LOWER")
            if "*" in text:
                self._wild.add(i, self._wild_slots(text, attr, norms), case=leaf.case)
            else:
                doc = norms(self.analyser.nlp.make_doc(text))
                phrase_patterns[attr].append((key, doc))
        for attr, pats in phrase_patterns.items():
            by_key: dict[str, list[Doc]] = defaultdict(list)
            for key, doc in pats:
                by_key[key].append(doc)
            for key, docs in by_key.items():
                self._phrase[attr].add(key, docs)

    def _wild_slots(self, text: str, attr: str, norms: Any) -> list[_Slot | _WildToken]:
        """The tokens of a term with ``*`` wildcards inside words: (column, hash)
        for a literal token, a _WildToken for one with a ``*``."""
        slots: list[_Slot | _WildToken] = []
        col = _WILD_COLS.index({"ORTH": ORTH, "LOWER": LOWER, "NORM": NORM}[attr])
        # Tokenise with the wildcard replaced by letters, so "cease-fire*" becomes the
        # tokens the tokenizer makes of "cease-fires": cease, -, fire*.
        for tok in norms(self.analyser.nlp.make_doc(text.replace("*", _WILD_MARK))):
            if _WILD_MARK in tok.text:
                slots.append(_WildToken(tuple(tok.text.split(_WILD_MARK))))
            else:
                value = {"NORM": tok.norm_, "LOWER": tok.lower_, "ORTH": tok.text}[attr]
                slots.append((col, self._vocab.strings.add(value)))
        return slots

    # --- matching ------------------------------------------------------------------

    def occurrences(self, analysed: AnalysedArticle) -> dict[int, list[Occurrence]]:
        """Every leaf occurrence in every field: one pass of each matcher per field."""
        found: dict[int, list[Occurrence]] = defaultdict(list)
        for ft in analysed.fields:
            doc = ft.doc
            spans: list[tuple[int, int, int]] = []
            for matcher in self._phrase.values():
                if len(matcher):
                    spans.extend(matcher(doc))
            for key, start, end in spans:
                leaf = self._key_leaf[key]
                found[leaf].append(self._occ(ft, leaf, start, end))
            for leaf, start, end in self._wild.find(doc):
                found[leaf].append(self._occ(ft, leaf, start, end))
            for leaf, rx in self._regexes:
                for n, m in enumerate(rx.finditer(ft.text)):
                    if n >= MAX_REGEX_MATCHES:
                        break
                    span = doc.char_span(m.start(), m.end(), alignment_mode="expand")
                    if span is not None and len(span):
                        found[leaf].append(self._occ(ft, leaf, span.start, span.end))
            if self._entities:
                for ent in doc.ents:
                    name = " ".join(ent.text.lower().split())
                    for leaf, spec in self._entities:
                        if ent.label_ in spec.labels and (not spec.names or name in spec.names):
                            found[leaf].append(self._occ(ft, leaf, ent.start, ent.end))
        if any(ft.repeated for ft in analysed.fields):
            for leaf, occs in found.items():
                found[leaf] = [o for o in occs if not self._repeated(analysed, o)]
        return found

    @staticmethod
    def _repeated(analysed: AnalysedArticle, occ: Occurrence) -> bool:
        ft = analysed.field(occ.field)
        return ft is not None and occ.sent in ft.repeated

    @staticmethod
    def _occ(ft: FieldText, leaf: int, start: int, end: int) -> Occurrence:
        # Two tokens and a slice of the field's string: a Span would rebuild its
        # text token by token (a fifth of the matching cost with the seed pack).
        first, last = ft.doc[start], ft.doc[end - 1]
        cstart, cend = first.idx, last.idx + len(last)
        return Occurrence(
            leaf=leaf, field=ft.name, sent=ft.sentence_of(start), start=start, end=end,
            cstart=cstart, cend=cend, text=ft.text[cstart:cend],
        )


def _term_text(leaf: LeafSpec, language: str) -> str | None:
    """The text of a leaf as compiled for ``language``, or None when the leaf belongs to
    another language (a rule file's language block): shared leaves compile everywhere,
    and a term is lemmatised by the analyser of the language it is compiled for."""
    if leaf.language is not None and leaf.language != language:
        return None
    return leaf.text


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
        self._memo = _TreeMemo()
        self._compiled: dict[str, _CompiledRules] = {}
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

    def _rules(self, language: str) -> _CompiledRules:
        """The rules compiled for a registered ``language`` (compiled on first use)."""
        rules = self._compiled.get(language)
        if rules is None:
            rules = self._compiled[language] = _CompiledRules(
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
                   analysed: AnalysedArticle) -> _Evaluator:
        return _Evaluator(topic, found, analysed, headline_copies=headline_copies(analysed),
                          memo=self._memo)

    def _second_stage(self, exps: list[TopicExplanation],
                      analysed: AnalysedArticle) -> list[TopicExplanation]:
        """The learned stage's verdict on each explained topic (when a model is loaded)."""
        model = self.learned
        if model is None or not model.judges(analysed.language):
            return exps
        ratios = {e.topic: min(4.0, e.score / e.threshold) if e.threshold else 0.0 for e in exps}
        out = []
        for exp in exps:
            tm = model.topics.get(exp.topic)
            if tm is None or exp.outcome is None:
                out.append(exp)
                continue
            signals = topic_signals(exp.outcome, analysed)
            signals.update({f"also:{t}": r for t, r in ratios.items() if t != exp.topic})
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
                           and not _scope_problem(self.ruleset.topic(e.topic), article, now)}
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
            scope = _scope_problem(t, article, now)
            out.append(_not_fired(exp, scope) if scope else exp)
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
            if _scope_problem(topic, article, now):
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


class _TreeMemo:
    """Per rule set: which leaves each group needs, memoised by node identity (the
    classifier holding it holds the rule set, so a node's id is never reused)."""

    def __init__(self) -> None:
        self._needs: dict[int, frozenset[int] | None] = {}
        self._under: dict[int, frozenset[int]] = {}

    def needs_a_leaf(self, node: Node) -> frozenset[int] | None:
        """The leaves one of which must occur for ``node`` to hold, or None when it
        can hold without any (a ``none`` or a ``min_count: 0`` inside)."""
        key = id(node)
        if key in self._needs:
            return self._needs[key]
        leaves: set[int] | None = set()
        stack, seen = [node], set()
        while stack and leaves is not None:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.kind == "none" or n.min_count <= 0:
                leaves = None
            elif n.kind == "leaf":
                leaves.add(n.leaf)
            else:
                stack.extend(n.children)
        result = self._needs[key] = frozenset(leaves) if leaves is not None else None
        return result

    def leaves_under(self, node: Node) -> frozenset[int]:
        """Every leaf in ``node``'s tree."""
        key = id(node)
        got = self._under.get(key)
        if got is None:
            leaves: set[int] = set()
            stack, seen = [node], set()
            while stack:
                n = stack.pop()
                if id(n) not in seen:
                    seen.add(id(n))
                    if n.kind == "leaf":
                        leaves.add(n.leaf)
                    stack.extend(n.children)
            got = self._under[key] = frozenset(leaves)
        return got


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
        return model, path
    return None, None


def _normal_line(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(" .:;!?-–—")


def headline_copies(analysed: AnalysedArticle) -> frozenset[int]:
    """The body's first sentences that repeat the headline word for word."""
    title, body = analysed.field("title"), analysed.field("body")
    if title is None or body is None:
        return frozenset()
    head = _normal_line(title.text)
    if len(head) < 12:
        return frozenset()
    copies = set()
    for i in range(min(2, len(body.sent_starts))):
        s, e = body.sentence_span(i)
        if _normal_line(body.text[s:e]) == head:
            copies.add(i)
    return frozenset(copies)


def _not_fired(exp: TopicExplanation, reason: str) -> TopicExplanation:
    return replace(exp, fired=False, reasons=(reason, *exp.reasons))


EPOCH_ARTEFACT_BEFORE = 1971  # dates before this year are a feed's zero timestamp


def _scope_problem(topic: Topic, article: Article, now: datetime | None) -> str | None:
    """Why ``article`` is outside the topic's scope, or None.

    Unknown language or date pass: feeds often omit them, and a missing value
    should not silence an alert. A date before 1971 counts as unknown: it is a
    feed's zero timestamp, not a publication date, and must not drop a new item.
    """
    if topic.feed_tags is not None:
        tags = {t.lower() for t in article.feed_tags}
        if not tags & topic.feed_tags:
            return f"feed tags {sorted(tags)} not in scope {sorted(topic.feed_tags)}"
    if topic.languages is not None and article.language:
        lang = article.language.lower().split("-")[0].split("_")[0]
        if lang not in topic.languages:
            return f"language {article.language!r} not in scope {sorted(topic.languages)}"
    if topic.max_age is not None and article.published is not None \
            and article.published.year >= EPOCH_ARTEFACT_BEFORE:
        now = now or datetime.now(UTC)
        published = article.published
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if now - published > topic.max_age:
            return f"published {published.isoformat()} is older than {topic.max_age}"
    return None


@dataclass(slots=True)
class _Evaluator:
    """Evaluates one topic's condition tree over one article's occurrences."""

    topic: Topic
    found: dict[int, list[Occurrence]]
    analysed: AnalysedArticle
    cache: dict[tuple[Node, _Ctx], _Result] = field(default_factory=dict)
    sentence_index: dict[int, frozenset[tuple[str, int]]] = field(default_factory=dict)
    field_index: dict[int, dict[str, list[_Hit]]] = field(default_factory=dict)
    blocked: dict[tuple[tuple[Node, int | None], ...], frozenset[tuple[str, int]]] = field(
        default_factory=dict)
    headline_copies: frozenset[int] = frozenset()  # body sentences that repeat the title
    memo: _TreeMemo = field(default_factory=_TreeMemo)
    excepted: int = 0  # occurrences dropped by except_near (a feature of the learned stage)

    def field_of(self, occ: Occurrence) -> str:
        """The lede is the body's first ``lede_sentences`` sentences."""
        # A headline repeated as the body's first line is not part of the lede.
        if occ.field == "body" and occ.sent < self.topic.lede_sentences + len(self.headline_copies):
            return "lede"
        return occ.field

    def points(self, hit: _Hit) -> float:
        return hit.weight * self.topic.field_weights.get(self.field_of(hit.occ), 1.0)

    # --- windows ---

    def close(self, a: Occurrence, b: Occurrence, within: int | None) -> bool:
        """Same field and sentence (within None), or at most ``within`` words apart."""
        if a.field != b.field:
            return False
        if within is None:
            return a.sent == b.sent
        first, second = (a, b) if a.start <= b.start else (b, a)
        if second.start < first.end:
            return True  # overlapping spans
        ft = self.analysed.field(a.field)
        assert ft is not None
        return ft.word_pos(second.start) - ft.word_pos(first.end) + 1 <= within

    # --- evaluation ---

    def eval(self, node: Node, ctx: _Ctx = _NO_CTX) -> _Result:
        if node.kind == "leaf":
            if not self.found.get(node.leaf):
                # Most leaves of a big topic did not occur: their result cannot depend
                # on the context, so skip narrowing it and the cache (a third of the
                # cost of matching with the seed pack).
                return _FAIL if node.min_count > 0 else _EMPTY_OK
        else:
            # A group none of whose leaves occurred fails without walking it (most
            # lists of a pack), unless a "none" or a min_count 0 inside could hold.
            leaves = self.memo.needs_a_leaf(node)
            if leaves is not None and self.found.keys().isdisjoint(leaves):
                return _FAIL
        key = (node, ctx)
        res = self.cache.get(key)
        if res is None:
            res = self.cache[key] = self._eval(node, ctx)
        return res

    def _narrow(self, node: Node, ctx: _Ctx) -> _Ctx:
        fields, excepts = ctx
        if node.fields is not None:
            fields = node.fields if fields is None else fields & node.fields
        if node.except_near:
            excepts = excepts + tuple((e, node.within) for e in node.except_near)
        return (fields, excepts)

    def _eval(self, node: Node, ctx: _Ctx) -> _Result:
        ctx = self._narrow(node, ctx)
        if node.kind == "leaf":
            return self._leaf(node, ctx)
        if node.kind == "near":
            return self._near(node, ctx)
        if node.kind == "any":
            # Skip the call for a listed term that did not occur (most of a list).
            found = self.found
            results = [self.eval(c, ctx) for c in node.children
                       if c.kind != "leaf" or c.min_count <= 0 or found.get(c.leaf)]
        else:
            results = [self.eval(c, ctx) for c in node.children]
        if node.kind == "none":
            return _Result(not any(r.ok for r in results))
        if node.kind == "all" and not all(r.ok for r in results):
            return _FAIL
        if node.weight == 1.0:  # the common case: the children's hits as they are
            hits = tuple(h for r in results if r.ok for h in r.hits)
        else:
            hits = tuple(
                _Hit(h.occ, h.term, h.weight * node.weight, h.src)
                for r in results if r.ok for h in r.hits
            )
        ok = any(r.ok for r in results) and self._enough(node, hits)
        return _Result(ok, hits if ok else ())

    def _enough(self, node: Node, hits: tuple[_Hit, ...]) -> bool:
        if len(hits) < node.min_count:
            return False
        if node.min_sentences > 1 and len({(h.occ.field, h.occ.sent) for h in hits}) < (
            node.min_sentences
        ):
            return False
        return node.min_distinct <= 1 or len({h.term for h in hits}) >= node.min_distinct

    def _leaf(self, node: Node, ctx: _Ctx) -> _Result:
        fields, excepts = ctx
        hits = []
        for occ in self.found.get(node.leaf, ()):
            if fields is not None and self.field_of(occ) not in fields:
                continue
            if excepts and self._excepted(occ, excepts):
                self.excepted += 1
                continue
            hits.append(_Hit(occ, node.label, node.weight, id(node)))
        ok = len(hits) >= node.min_count
        return _Result(ok, tuple(hits) if ok else ())

    def _excepted(self, occ: Occurrence, excepts: tuple[tuple[Node, int | None], ...]) -> bool:
        blocked = self.blocked.get(excepts)
        if blocked is None:
            # The sentences every sentence-window exception holds in, as one set.
            sentences: set[tuple[str, int]] = set()
            for ex, within in excepts:
                if within is None:
                    sentences |= self._sentences_of(ex)
            blocked = self.blocked[excepts] = frozenset(sentences)
        if (occ.field, occ.sent) in blocked:
            return True
        for ex, within in excepts:
            if within is None:
                continue
            for h in self._by_field(ex).get(occ.field, ()):
                if self.close(occ, h.occ, within):
                    return True
        return False

    def _sentences_of(self, node: Node) -> frozenset[tuple[str, int]]:
        """The (field, sentence) pairs where ``node`` holds: sentence windows are set look-ups."""
        key = id(node)
        got = self.sentence_index.get(key)
        if got is None:
            got = self.sentence_index[key] = frozenset(
                (h.occ.field, h.occ.sent) for h in self.eval(node).hits)
        return got

    def _by_field(self, node: Node) -> dict[str, list[_Hit]]:
        key = id(node)
        got = self.field_index.get(key)
        if got is None:
            got = self.field_index[key] = defaultdict(list)
            for h in self.eval(node).hits:
                got[h.occ.field].append(h)
        return got

    def _near(self, node: Node, ctx: _Ctx) -> _Result:
        parts = [self.eval(c, ctx).hits for c in node.children]
        if not all(parts):
            return _FAIL
        # Partners filed by sentence (a sentence window) or by field: each anchor
        # compares with its own sentence's or field's hits only.
        sentence = node.within is None
        index: list[dict[tuple[str, int], list[_Hit]]] = []
        for other in parts[1:]:
            by: dict[tuple[str, int], list[_Hit]] = defaultdict(list)
            for h in other:
                by[(h.occ.field, h.occ.sent if sentence else 0)].append(h)
            index.append(by)
        hits: dict[Occurrence, _Hit] = {}
        anchors: set[Occurrence] = set()
        for a in parts[0]:
            partners = []
            place = (a.occ.field, a.occ.sent if sentence else 0)
            for by in index:
                near = [h for h in by.get(place, ())
                        if h.occ != a.occ and (sentence or self.close(a.occ, h.occ, node.within))]
                if not near:
                    break
                partners.extend(near)
            else:
                anchors.add(a.occ)
                weight = a.weight * node.weight
                old = hits.get(a.occ)
                # One span can reach the anchor list twice (as a term and as a nested
                # proximity's partner, weight 0): the scoring copy is kept.
                if old is None or old.weight < weight:
                    hits[a.occ] = _Hit(a.occ, a.term, weight, id(node))
                for p in partners:
                    hits.setdefault(p.occ, _Hit(p.occ, p.term, 0.0, id(node)))
        if len(anchors) < node.min_count:
            return _FAIL
        return _Result(True, tuple(hits.values()))

    # --- topic ---

    def _scored(self, hits: Iterable[_Hit]) -> list[_Hit]:
        """One hit per matched span and scoring node (the best), capped at max_count
        per term. A span reached twice through the same node (a list named in two
        groups) scores once; a proximity bonus on the same span adds to it."""
        best: dict[tuple[str, int, int, int], _Hit] = {}
        for h in hits:
            k = (h.occ.field, h.occ.start, h.occ.end, h.src)
            if k not in best or self.points(h) > self.points(best[k]):
                best[k] = h
        ordered = self._outermost(best.values())
        ordered.sort(key=lambda h: -self.points(h))
        if self.topic.max_count is None:
            return ordered
        per_term: dict[str, int] = defaultdict(int)
        kept = []
        for h in ordered:
            if per_term[h.term] < self.topic.max_count or self.points(h) == 0:
                per_term[h.term] += 1
                kept.append(h)
        return kept

    @staticmethod
    def _outermost(hits: Iterable[_Hit]) -> list[_Hit]:
        """Drop a scoring hit inside a longer one ("negotiations" within "peace
        negotiations"): one mention scores once, as its most specific term."""
        spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
        hits = list(hits)
        for h in hits:
            if h.weight:
                spans[h.occ.field].append((h.occ.start, h.occ.end))
        kept = []
        for h in hits:
            s, e = h.occ.start, h.occ.end
            inside = any(
                os <= s and e <= oe and (os, oe) != (s, e) for os, oe in spans[h.occ.field]
            )
            if not inside:
                kept.append(h)
        return kept

    def explain(self) -> TopicExplanation:
        t = self.topic
        root = self.eval(t.terms)
        # Proximity partners (weight 0: "Ukraine" next to "talks") qualify a hit
        # but are not terms of the topic: they neither count nor show.
        hits = [h for h in self._scored(root.hits) if h.weight]
        score = round(sum(self.points(h) for h in hits), 4)
        distinct = len({h.term for h in hits})
        body = self.analysed.field("body")
        threshold = t.threshold_for(body.word_pos(len(body.doc)) if body else 0)
        # Each reason says what was missing and by how much (test-rule prints them).
        reasons = []
        if score < threshold:
            longer = f" (raised from {t.threshold:g} for a long body)" if threshold > t.threshold else ""
            short = round(threshold - score, 4)
            reasons.append(f"score {score:g} < threshold {threshold:g}{longer}: {short:g} more "
                           f"point{'s' if short != 1 else ''} needed")
        if distinct < t.min_terms:
            reasons.append(f"{distinct} distinct terms < min_terms {t.min_terms}")
        require_met, require_hits = [], 0
        for i, req in enumerate(t.require, 1):
            res = self.eval(req)
            require_met.append(res.ok)
            require_hits += sum(len(self.found.get(leaf, ())) for leaf in self.memo.leaves_under(req))
            if not res.ok:
                reasons.append(f"require #{i} not met: {self._shortfall(req)}")
        excluded = 0
        for i, exc in enumerate(t.exclude, 1):
            res = self.eval(exc)
            if res.ok:
                excluded += 1
                terms = ", ".join(dict.fromkeys(h.term for h in res.hits)) or exc.label
                reasons.append(f"excluded by exclude #{i}: {terms} ({exc.source})")
        hits.sort(key=lambda h: (_FIELD_ORDER[h.occ.field], h.occ.start, -self.points(h)))
        term_hits = self._term_hits(hits)
        outcome = RuleOutcome(
            fired=not reasons, score=score, threshold=threshold, base_threshold=t.threshold,
            hits=term_hits, require_met=tuple(require_met), require_hits=require_hits,
            excluded=excluded, excepted=self.excepted,
        )
        return TopicExplanation(
            topic=t.id, name=t.name, fired=not reasons, score=score, threshold=threshold,
            distinct_terms=distinct, min_terms=t.min_terms, severity=t.severity,
            channels=t.channels, hits=term_hits, evidence=self.evidence(hits),
            reasons=tuple(reasons), language=self.analysed.language,
            article_language=self.analysed.article_language,
            why=why_words(term_hits, threshold, t.threshold),
            outcome=outcome,
        )

    def _all_hits(self, node: Node) -> list[_Hit]:
        """Every occurrence under ``node``, held or not (for "found 1 of 3")."""
        if node.kind == "leaf":
            return [_Hit(o, node.label, node.weight) for o in self.found.get(node.leaf, ())]
        leaves = self.memo.needs_a_leaf(node)
        if leaves is not None and self.found.keys().isdisjoint(leaves):
            return []
        # A proximity's partners ("Ukraine" next to "aid") are not what it looks for.
        children = node.children[:1] if node.kind == "near" else node.children
        out: list[_Hit] = []
        for c in children:
            if c.kind == "leaf":
                out.extend(_Hit(o, c.label, c.weight) for o in self.found.get(c.leaf, ()))
            elif c.kind != "none":
                out.extend(self._all_hits(c))
        return out

    def _shortfall(self, node: Node) -> str:
        """What a failed condition lacked, in words: "3 war-context terms needed (or 1 in
        the headline), found 1: kremlin"."""
        found = list(dict.fromkeys(h.occ.text.lower() for h in self._all_hits(node)))
        names = list(dict.fromkeys(re.findall(r"@(\w+)", node.label)))
        what = " / ".join(n.replace("_", "-") for n in names) + " terms" if names else node.label
        options = [c for c in node.children if c.kind != "none"] if node.kind == "any" else [node]
        alternatives = []  # (how many, where): "3", "1 in the headline", "in 2 sentences"
        for o in options or [node]:
            if o.fields:
                where = "/".join(_FIELD_NAMES.get(f, f) for f in sorted(o.fields, key=_field_rank))
                alternatives.append((str(max(1, o.min_count)), f" in the {where}"))
            elif o.min_sentences > 1:
                alternatives.append(("", f" in {o.min_sentences} sentences"))
            else:
                alternatives.append((str(max(1, o.min_count)), ""))
        (count, where), rest = alternatives[0], alternatives[1:]
        head = f"{count} {what}{where}" if count else f"{what}{where}"
        others = ", ".join(f"{c}{w}".strip() for c, w in rest)
        shown = ", ".join(found[:6]) + (f" (+{len(found) - 6})" if len(found) > 6 else "")
        return (f"{head}{f' (or {others})' if others else ''} needed, found {len(found)}"
                + (f": {shown}" if found else "") + f" ({node.source})")

    def _term_hits(self, hits: list[_Hit]) -> tuple[TermHit, ...]:
        """One TermHit per matched span; a span scored by two nodes (a term and a
        proximity bonus) shows once with the points added up."""
        merged: dict[tuple[str, int, int], TermHit] = {}
        for h in hits:
            key = (h.occ.field, h.occ.start, h.occ.end)
            pts = self.points(h)
            if key in merged:
                old = merged[key]
                merged[key] = TermHit(term=old.term, text=old.text, field=old.field,
                                      sentence=old.sentence, weight=round(old.weight + pts, 4))
            else:
                merged[key] = TermHit(term=shown_term(h.term, h.occ.text), text=h.occ.text,
                                      field=self.field_of(h.occ),
                                      sentence=h.occ.sent, weight=round(pts, 4))
        return tuple(merged.values())

    def evidence(self, hits: list[_Hit]) -> tuple[EvidenceSentence, ...]:
        """The best one to three sentences, terms marked ``**like this**``."""
        by_sent: dict[tuple[str, int], list[_Hit]] = defaultdict(list)
        for h in hits:
            by_sent[(h.occ.field, h.occ.sent)].append(h)

        def rank(item: tuple[tuple[str, int], list[_Hit]]) -> tuple[float, float, int, int]:
            (fname, sent), hs = item
            return (-len({h.term for h in hs}), -sum(self.points(h) for h in hs),
                    _FIELD_ORDER[fname], sent)

        best = sorted(by_sent.items(), key=rank)[:MAX_EVIDENCE]
        best.sort(key=lambda it: (_FIELD_ORDER[it[0][0]], it[0][1]))
        out = []
        for (fname, sent), hs in best:
            ft = self.analysed.field(fname)
            assert ft is not None
            s, e = ft.sentence_span(sent)
            text = ft.text[s:e]
            spans = sorted({(h.occ.cstart - s, h.occ.cend - s) for h in hs})
            out.append(EvidenceSentence(
                field=self.field_of(hs[0].occ), text=" ".join(text.split()),
                marked=" ".join(mark(text, spans).split()),
                terms=tuple(dict.fromkeys(shown_term(h.term, h.occ.text) for h in hs)),
            ))
        return tuple(out)


_FIELD_NAMES = {"title": "headline", "summary": "summary", "lede": "lede", "body": "body"}


def _field_rank(name: str) -> int:
    return _FIELD_ORDER.get(name, 9)


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
