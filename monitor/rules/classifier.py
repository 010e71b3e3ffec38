"""The match stage: run every topic's rules over an analysed article.

All terms of all topics are compiled once into shared spaCy matchers (one
``PhraseMatcher`` per match attribute), so an article is scanned once whatever
the number of rules; only the topics whose terms occurred are then evaluated.
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

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from spacy.attrs import LOWER, NORM, ORTH
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from monitor.analysis.analyser import AnalysedArticle, Analyser, FieldText
from monitor.models import Article, EvidenceSentence, TermHit, TopicMatch
from monitor.rules.ruleset import LeafSpec, Node, RuleSet, Topic, compile_regex, load_rules

MAX_REGEX_MATCHES = 500  # per regex and field: bounds the work a greedy pattern can cause
MAX_EVIDENCE = 3
_FIELD_ORDER = {"title": 0, "summary": 1, "lede": 2, "body": 3}
_WILD_CHARS = r"[\w'’.\-]*"
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
    reasons: tuple[str, ...] = ()  # why not (empty when fired)

    def to_match(self) -> TopicMatch:
        return TopicMatch(
            topic=self.topic, score=self.score, threshold=self.threshold,
            severity=self.severity, hits=self.hits, evidence=self.evidence,
            channels=self.channels,
        )

    def format(self) -> str:
        """Plain-text explanation for the CLI."""
        verdict = "FIRED" if self.fired else "no match"
        lines = [
            f"{self.topic} ({self.name}): {verdict} — score {self.score:g} / threshold "
            f"{self.threshold:g}, {self.distinct_terms} distinct terms (min {self.min_terms}), "
            f"severity {self.severity}"
        ]
        lines += [f"  why not: {r}" for r in self.reasons]
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
        # The very regex the Matcher used (and tested with .search, as it did).
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


class Classifier:
    """Compiled rules + analyser; build once per process, reuse for every article."""

    def __init__(self, ruleset: RuleSet, analyser: Analyser) -> None:
        self.ruleset = ruleset
        self.analyser = analyser
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
        # Inverted index: which topics a leaf can score for (only those are evaluated).
        self._leaf_topics: dict[int, list[int]] = defaultdict(list)
        for ti, topic in enumerate(ruleset.topics):
            for leaf in topic.leaf_ids:
                self._leaf_topics[leaf].append(ti)

    @classmethod
    def from_files(cls, paths: Sequence[Path] | Path, spacy_model: str | None = None) -> Classifier:
        return cls(load_rules(paths), Analyser(spacy_model))

    def __reduce__(self) -> tuple[Any, ...]:
        # spaCy matchers and re2 objects do not pickle; rebuild from the plain rule set.
        return (_rebuild, (self.ruleset, self.analyser.model_requested))

    @property
    def topics(self) -> list[Topic]:
        return self.ruleset.topics

    # --- compilation ---------------------------------------------------------------

    def _compile(self, leaves: list[LeafSpec]) -> None:
        norms = self.analyser.nlp.get_pipe("newsmon_norms")
        phrase_patterns: dict[str, list[tuple[str, Doc]]] = defaultdict(list)
        for i, leaf in enumerate(leaves):
            key = f"L{i}"
            if leaf.kind == "regex":
                self._regexes.append((i, compile_regex(leaf.text, case=leaf.case)))
                continue
            if leaf.kind == "entity":
                self._entities.append((i, leaf))
                continue
            self._key_leaf[self._vocab.strings.add(key)] = i
            attr = "ORTH" if leaf.case else ("NORM" if leaf.lemma else "LOWER")
            if "*" in leaf.text:
                self._wild.add(i, self._wild_slots(leaf.text, attr, norms), case=leaf.case)
            else:
                doc = norms(self.analyser.nlp.make_doc(leaf.text))
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

    def _occurrences(self, analysed: AnalysedArticle) -> dict[int, list[Occurrence]]:
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
        span = ft.doc[start:end]
        return Occurrence(
            leaf=leaf, field=ft.name, sent=ft.sentence_of(start), start=start, end=end,
            cstart=span.start_char, cend=span.end_char, text=span.text,
        )

    # --- public API ------------------------------------------------------------------

    def classify(self, article: Article, *, now: datetime | None = None) -> list[TopicMatch]:
        """The topics that fired on ``article``, each with its evidence."""
        return self.classify_analysed(article, self.analyser.analyse(article), now=now)

    def classify_analysed(
        self, article: Article, analysed: AnalysedArticle, *, now: datetime | None = None
    ) -> list[TopicMatch]:
        """``classify`` on an article already analysed (the analysis is the costly part)."""
        found = self._occurrences(analysed)
        candidates = sorted({ti for leaf in found for ti in self._leaf_topics.get(leaf, ())})
        out = []
        for ti in candidates:
            topic = self.ruleset.topics[ti]
            if _scope_problem(topic, article, now):
                continue
            exp = _Evaluator(topic, found, analysed).explain()
            if exp.fired:
                out.append(exp.to_match())
        return out

    def scores(self, article: Article, *, now: datetime | None = None) -> dict[str, float]:
        return {e.topic: e.score for e in self.explain(article, now=now)}

    def explain(
        self, article: Article, *, now: datetime | None = None, topic: str | None = None
    ) -> list[TopicExplanation]:
        """Every topic (or just ``topic``), fired or not, with score, hits and reasons."""
        analysed = self.analyser.analyse(article)
        found = self._occurrences(analysed)
        topics = self.ruleset.topics
        if topic is not None:
            topics = [self.ruleset.topic(topic)]
        out = []
        for t in topics:
            exp = _Evaluator(t, found, analysed).explain()
            scope = _scope_problem(t, article, now)
            if scope:
                exp = _not_fired(exp, scope)
            out.append(exp)
        return out

    def check_examples(self) -> list[str]:
        """Run every topic's should_match / should_not_match texts; list the failures."""
        problems = []
        for t in self.ruleset.topics:
            for expect, examples in ((True, t.should_match), (False, t.should_not_match)):
                for n, ex in enumerate(examples, 1):
                    article = Article(title=ex.title, summary="", body=ex.text,
                                      text_source="page", url=None)
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


def _rebuild(ruleset: RuleSet, model: str | None) -> Classifier:
    return Classifier(ruleset, Analyser(model))


def _not_fired(exp: TopicExplanation, reason: str) -> TopicExplanation:
    return TopicExplanation(
        topic=exp.topic, name=exp.name, fired=False, score=exp.score, threshold=exp.threshold,
        distinct_terms=exp.distinct_terms, min_terms=exp.min_terms, severity=exp.severity,
        channels=exp.channels, hits=exp.hits, evidence=exp.evidence,
        reasons=(reason, *exp.reasons),
    )


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

    def field_of(self, occ: Occurrence) -> str:
        """The lede is the body's first ``lede_sentences`` sentences."""
        if occ.field == "body" and occ.sent < self.topic.lede_sentences:
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
        if node.kind == "leaf" and not self.found.get(node.leaf):
            # Most leaves of a big topic did not occur: their result cannot depend
            # on the context, so skip narrowing it and the cache (a third of the
            # cost of matching with the seed pack).
            return _FAIL if node.min_count > 0 else _EMPTY_OK
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
        results = [self.eval(c, ctx) for c in node.children]
        if node.kind == "none":
            return _Result(not any(r.ok for r in results))
        if node.kind == "all" and not all(r.ok for r in results):
            return _FAIL
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
                continue
            hits.append(_Hit(occ, node.label, node.weight, id(node)))
        ok = len(hits) >= node.min_count
        return _Result(ok, tuple(hits) if ok else ())

    def _excepted(self, occ: Occurrence, excepts: tuple[tuple[Node, int | None], ...]) -> bool:
        for ex, within in excepts:
            for h in self.eval(ex).hits:
                if self.close(occ, h.occ, within):
                    return True
        return False

    def _near(self, node: Node, ctx: _Ctx) -> _Result:
        parts = [self.eval(c, ctx).hits for c in node.children]
        if not all(parts):
            return _FAIL
        hits: dict[Occurrence, _Hit] = {}
        anchors = 0
        for a in parts[0]:
            partners = []
            for other in parts[1:]:
                near = [h for h in other
                        if h.occ != a.occ and self.close(a.occ, h.occ, node.within)]
                if not near:
                    break
                partners.extend(near)
            else:
                anchors += 1
                hits[a.occ] = _Hit(a.occ, a.term, a.weight * node.weight, id(node))
                for p in partners:
                    hits.setdefault(p.occ, _Hit(p.occ, p.term, 0.0, id(node)))
        if anchors < node.min_count:
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
        reasons = []
        if score < threshold:
            longer = f" (raised from {t.threshold:g} for a long body)" if threshold > t.threshold else ""
            reasons.append(f"score {score:g} < threshold {threshold:g}{longer}")
        if distinct < t.min_terms:
            reasons.append(f"{distinct} distinct terms < min_terms {t.min_terms}")
        for i, req in enumerate(t.require, 1):
            if not self.eval(req).ok:
                reasons.append(f"require #{i} not met: {req.label} ({req.source})")
        for i, exc in enumerate(t.exclude, 1):
            res = self.eval(exc)
            if res.ok:
                terms = ", ".join(dict.fromkeys(h.term for h in res.hits)) or exc.label
                reasons.append(f"excluded by exclude #{i}: {terms} ({exc.source})")
        hits.sort(key=lambda h: (_FIELD_ORDER[h.occ.field], h.occ.start, -self.points(h)))
        term_hits = self._term_hits(hits)
        return TopicExplanation(
            topic=t.id, name=t.name, fired=not reasons, score=score, threshold=threshold,
            distinct_terms=distinct, min_terms=t.min_terms, severity=t.severity,
            channels=t.channels, hits=term_hits, evidence=self.evidence(hits),
            reasons=tuple(reasons),
        )

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
                merged[key] = TermHit(term=h.term, text=h.occ.text, field=self.field_of(h.occ),
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
                terms=tuple(dict.fromkeys(h.term for h in hs)),
            ))
        return tuple(out)


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
