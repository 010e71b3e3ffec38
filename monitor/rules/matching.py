"""Compiling a rule set into matchers, and finding every term's occurrences in an article.

All terms of all topics are compiled once into shared spaCy matchers (one
``PhraseMatcher`` per match attribute), so an article is scanned once whatever
the number of rules. Matchers are bound to one pipeline's vocabulary, so a rule
set is compiled once per language against that language's analyser
(:class:`CompiledRules`). Wildcard terms are tested against each distinct word
of a field, not each token (:class:`_WildcardIndex`). Regex leaves run through
re2 (linear time), entity leaves read ``doc.ents``. What the occurrences mean
(scores, conditions, evidence) is ``evaluator.py``'s.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from spacy.attrs import LOWER, NORM, ORTH
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from monitor.analysis.analyser import AnalysedArticle, Analyser, FieldText
from monitor.rules.compiled import LeafSpec, Node, RuleSet, compile_regex

log = logging.getLogger(__name__)

MAX_REGEX_MATCHES = 500  # per regex and field: bounds the work a greedy pattern can cause
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


class CompiledRules:
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
        # A regex runs only over the fields where a rule can count it: each match costs
        # a char_span and an Occurrence, and "is there a headline" ('\\w' in the title)
        # would otherwise match every word of the body (a fifth of the pack's cost).
        self._leaf_fields = matcher_fields(ruleset)
        self._regex_fields: dict[int, frozenset[str] | None] = {}
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
                self._regex_fields[i] = self._leaf_fields.get(i)
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
                wanted = self._regex_fields[leaf]
                if wanted is not None and ft.name not in wanted:
                    continue
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


def matcher_fields(ruleset: RuleSet) -> dict[int, frozenset[str] | None]:
    """Leaf index → the analysed fields its occurrences can count in (None: any field).

    A node's ``fields`` narrow its subtree; ``lede`` is part of the body field. A leaf
    named under ``except_near`` (checked near another occurrence, wherever it is) or
    anywhere without a restriction can count in every field."""
    restricted: dict[int, set[str]] = defaultdict(set)
    anywhere: set[int] = set()

    def visit(node: Node, fields: frozenset[str] | None) -> None:
        if node.fields is not None:
            fields = node.fields if fields is None else fields & node.fields
        for near in node.except_near:
            visit(near, None)
        if node.kind == "leaf":
            if fields is None:
                anywhere.add(node.leaf)
            else:
                restricted[node.leaf].update("body" if f == "lede" else f for f in fields)
        for child in node.children:
            visit(child, fields)

    for topic in ruleset.topics:
        for root in (topic.terms, *topic.require, *topic.exclude):
            visit(root, None)
    out: dict[int, frozenset[str] | None] = {leaf: frozenset(f) for leaf, f in restricted.items()}
    out.update(dict.fromkeys(anywhere))
    return out


def _term_text(leaf: LeafSpec, language: str) -> str | None:
    """The text of a leaf as compiled for ``language``, or None when the leaf belongs to
    another language (a rule file's language block): shared leaves compile everywhere,
    and a term is lemmatised by the analyser of the language it is compiled for."""
    if leaf.language is not None and leaf.language != language:
        return None
    return leaf.text
