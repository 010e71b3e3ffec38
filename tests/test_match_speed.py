"""The fast paths of analysis and matching against the spaCy code they replace.

The analyser sets sentences, lemmas and norms on token arrays, and wildcard
terms are matched per distinct word instead of by a ``Matcher`` regex per
token: both must give exactly what the token-by-token versions gave.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import spacy
from spacy.attrs import LEMMA, NORM, ORTH, SENT_START
from spacy.matcher import Matcher
from spacy.tokens import Doc

from monitor.analysis.analyser import Analyser, normalise_text
from monitor.rules.classifier import Classifier
from monitor.rules.matching import _WILD_CHARS, _WILD_MARK
from monitor.rules.ruleset import load_rules
from tests.helpers.rules import article

PIECES = ["Talks", "talks", "U.S.", "10:45", "negotiators", "cease-fire", "İran", "ſudan", "київ",
          "\u212aelvin", "o’brien", "word", ".", "!", "?", "…", "。", ",", "“", "”", "(", ")", "-",
          "—", "\n", "\n\n", "\n \n", " ", "  ", "\t", "*"]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) + rng.choice(["", " "]) for _ in range(rng.randint(0, 40)))
            for _ in range(n)]


def _reference_pipeline(analyser: Analyser) -> Any:
    """spaCy's own sentencizer, and the line-break and lemma steps token by token."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    lookup = analyser.nlp.get_pipe("newsmon_norms")

    def run(text: str) -> Doc:
        doc = nlp(text)
        for token in doc[:-1]:
            if token.is_space and "\n" in token.text:
                if token.i > 0 and token.is_sent_start:
                    token.is_sent_start = False
                doc[token.i + 1].is_sent_start = True
        for token in doc:
            lemma = lookup.lemma(token.text)
            token.lemma_, token.norm_ = lemma, lemma.lower()
        return doc

    return run


def test_array_pipeline_equals_token_by_token_pipeline() -> None:
    analyser = Analyser()
    reference = _reference_pipeline(analyser)
    for text in [*_random_texts(3000, 5), "", " ", "\n", "Hi.\nThere", "A. B! C? D…"]:
        text = normalise_text(text)
        ours, theirs = analyser.nlp(text), reference(text)
        cols = [ORTH, SENT_START, LEMMA, NORM]
        assert (ours.to_array(cols) == theirs.to_array(cols)).all(), repr(text)
        ft = analyser.analyse_fields("", "", text).field("body")
        if ft is not None:
            assert ft.sent_starts == ([s.start for s in theirs.sents] or [0]), repr(text)
            assert ft.text == theirs.text


WILDCARDS = ["negotiat*", "*fire", "cease-fire*", "peace negotiat*", "n*t", "a*", "de*", "kim jong*",
             "jong* un", "İran*", "iran*", "ſudan*", "київ*", "o’brien*", "u.s.*", "mid-*", "package*",
             "aid package*", "fire* fire*", "k*", "kelvin*", "s*s", "*.", "talk* about peace*"]
WORDS = ["negotiations", "Negotiators", "NEGOTIATE", "negation", "ceasefire", "cease-fire",
         "Cease-Fires", "misfire", "Peace", "not", "n't", "A", "an", "De", "Kim", "Jong-un", "jong",
         "un", "İran", "İRAN", "Iran", "ıran", "iranian", "ſudan", "Sudan", "Київ", "O’Brien",
         "o'brien", "U.S.", "u.s.", "mid-term", "packages", "Packaged", "aid", "Aid", "K", "\u212aelvin",
         "KELVIN", "SOS", "ss", "ok.", "talking", "about", "peace", ".", ",", "\n", "—", "“"]


def _matcher_reference(clf: Classifier, leaves: list[Any]) -> Matcher:
    """The spaCy Matcher the classifier used to build for wildcard terms."""
    nlp = clf.analyser.nlp
    norms = nlp.get_pipe("newsmon_norms")
    matcher = Matcher(nlp.vocab)
    for i, leaf in enumerate(leaves):
        attr = "ORTH" if leaf.case else ("NORM" if leaf.lemma else "LOWER")
        pattern: list[dict[str, Any]] = []
        for tok in norms(nlp.make_doc(leaf.text.replace("*", _WILD_MARK))):
            if _WILD_MARK in tok.text:
                rx = "^" + _WILD_CHARS.join(re.escape(p) for p in tok.text.split(_WILD_MARK)) + "$"
                pattern.append({"ORTH": {"REGEX": rx if leaf.case else "(?i)" + rx}})
            else:
                pattern.append({attr: {"NORM": tok.norm_, "LOWER": tok.lower_, "ORTH": tok.text}[attr]})
        matcher.add(str(i), [pattern])
    return matcher


def test_wildcards_match_like_the_spacy_matcher(tmp_path: Path) -> None:
    terms = [{"term": t, **o} for t in WILDCARDS for o in ({}, {"case": True}, {"lemma": False})]
    path = tmp_path / "w.yaml"
    path.write_text(json.dumps({"topics": [{"id": f"t{i}", "terms": [t]} for i, t in enumerate(terms)]}))
    ruleset = load_rules([path])
    clf = Classifier(ruleset, Analyser())
    reference = _matcher_reference(clf, ruleset.leaves)
    vocab = clf.analyser.nlp.vocab
    rng = random.Random(11)
    total = 0
    for _ in range(400):
        text = "".join(rng.choice(WORDS) + rng.choice(["", " ", " "]) for _ in range(rng.randint(1, 40)))
        analysed = clf.analyser.analyse_fields("", "", text)
        found = clf._occurrences(analysed)
        ours = sorted((leaf, o.start, o.end) for leaf, occs in found.items() for o in occs)
        doc = analysed.fields[0].doc
        theirs = sorted((int(vocab.strings[k]), s, e) for k, s, e in reference(doc))
        assert ours == theirs, repr(text)
        for occs in found.values():  # each leaf's occurrences in text order, as before
            assert [o.start for o in occs] == sorted(o.start for o in occs)
        total += len(theirs)
    assert total > 1000  # the texts did exercise the wildcards


def test_classify_cost_does_not_grow_with_wildcards_times_tokens(tmp_path: Path) -> None:
    """500 wildcard terms over a ~1,000-word article stay well under the analysis cost."""
    rng = random.Random(2)
    stems = sorted({"".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
                    for _ in range(600)})[:500]
    path = tmp_path / "many.yaml"
    path.write_text(json.dumps({"topics": [{"id": f"t{i}", "terms": [s + "*"]}
                                           for i, s in enumerate(stems)]}))
    clf = Classifier(load_rules([path]), Analyser())
    art = article("Russia and Ukraine held peace talks in Istanbul on Tuesday. " * 100)
    analysed = clf.analyser.analyse(art)
    clf.classify_analysed(art, analysed)  # warm up
    start = time.perf_counter()
    for _ in range(5):
        clf.classify_analysed(art, analysed)
    assert (time.perf_counter() - start) / 5 < 0.05  # measured well under 1 ms; generous for CI
