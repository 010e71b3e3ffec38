"""The analyse stage: tokens, sentences, lemmas and (optionally) entities.

The default pipeline is ``spacy.blank("en")`` + sentencizer + a lookup
lemmatizer (``spacy-lookups-data``): about 5 ms per 1,000 words and no
download. A trained pipeline named in config (``en_core_web_sm``) is used when
installed, for its named entities; otherwise entity conditions rely on the rule
files' gazetteer, added as an ``EntityRuler`` by ``monitor.rules.classifier``.

Every token's ``norm_`` is set to its lower-cased lookup lemma, so one
``PhraseMatcher(attr="NORM")`` matches all word forms of all rule terms in one
pass, independent of the pipeline's own (context-dependent) lemmatizer.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np
import spacy
from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, LEMMA, NORM, ORTH, SENT_START
from spacy.language import Language
from spacy.lookups import load_lookups
from spacy.pipeline import Sentencizer
from spacy.strings import get_string_id
from spacy.tokens import Doc

from monitor.models import Article

log = logging.getLogger(__name__)

MAX_FIELD_CHARS = 300_000  # ~50,000 words: longer bodies are cut (a worker must not stall)
# Memo of word -> (lemma, norm) hashes per analyser: a worker sees the same few
# thousand words all day; cleared when full so memory stays bounded.
MAX_NORM_CACHE = 50_000  # ~11 MB
# Components of trained pipelines we do not use: entities are the only reason to load one.
_UNUSED = ["tagger", "parser", "attribute_ruler", "lemmatizer", "morphologizer", "senter"]

# Live blogs glue timestamps to words ("10:45Ceasefire talks...") and scrapers
# glue sentences ("said.The"); split both so tokens and sentences come out right.
_GLUED_TIME = re.compile(r"(?<=\d)(?=[A-Z][a-z])")
_GLUED_SENTENCE = re.compile(r"(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])")


@Language.factory("newsmon_norms")
def _make_norms(nlp: Language, name: str) -> _LookupNorms:
    return _LookupNorms()


class _LookupNorms:
    """Set ``lemma_`` and ``norm_`` (lower-cased lemma) from the lookup table.

    The table is case-sensitive ("Talks" is absent), so the lower-cased form is
    tried too; words not in the table are their own lemma.
    """

    def __init__(self) -> None:
        self.table = load_lookups("en", ["lemma_lookup"]).get_table("lemma_lookup")
        # ORTH hash -> (LEMMA hash, NORM hash); see MAX_NORM_CACHE.
        self._cache: dict[int, tuple[int, int]] = {}

    def lemma(self, text: str) -> str:
        found = self.table.get(text)
        if found is None:
            found = self.table.get(text.lower(), text)
        return found

    def __call__(self, doc: Doc) -> Doc:
        # Works on hash arrays, not Token objects: creating a Python Token per
        # word and setting two string properties cost more than the tokenizer.
        if not len(doc):
            return doc
        words, where = np.unique(doc.to_array(ORTH), return_inverse=True)
        cache, strings = self._cache, doc.vocab.strings
        if len(cache) > MAX_NORM_CACHE:
            cache.clear()
        values = []
        for orth in words.tolist():  # each distinct word once
            pair = cache.get(orth)
            if pair is None:
                lemma = self.lemma(strings[orth])
                pair = cache[orth] = (strings.add(lemma), strings.add(lemma.lower()))
            values.append(pair)
        doc.from_array([LEMMA, NORM], np.array(values, dtype=np.uint64)[where.reshape(-1)])
        return doc


@Language.factory("newsmon_sentencizer")
def _make_sentencizer(nlp: Language, name: str) -> _ArraySentencizer:
    return _ArraySentencizer()


class _ArraySentencizer:
    """spaCy's rule-based ``sentencizer`` (default punctuation, ``overwrite=False``)
    computed on token arrays.

    spaCy's own walks the Doc creating a Python Token per word, a third of the
    pipeline's cost after tokenizing. The rule is the same: a sentence starts at
    the first token, and at each token that is neither punctuation nor a
    sentence-final character when such a character came after the previous
    such token.
    """

    def __init__(self) -> None:
        self.punct_hashes = np.array(
            sorted(get_string_id(c) for c in Sentencizer.default_punct_chars), dtype=np.uint64
        )

    def __call__(self, doc: Doc) -> Doc:
        n = len(doc)
        if not n:
            return doc
        cols = doc.to_array([ORTH, IS_PUNCT, SENT_START]).reshape(n, 3)
        at = np.searchsorted(self.punct_hashes, cols[:, 0]).clip(0, len(self.punct_hashes) - 1)
        final = self.punct_hashes[at] == cols[:, 0]  # text is a sentence-final character
        words = np.flatnonzero(~final & (cols[:, 1] == 0))
        finals_before = np.cumsum(final)[words]  # sentence-final characters up to each word
        previous = np.concatenate(([0], finals_before[:-1]))
        guess = np.full(n, -1, dtype=np.int64)
        guess[0] = 1
        guess[words[finals_before > previous]] = 1
        current = cols[:, 2].view(np.int64)  # -1 is stored as 2**64 - 1
        starts = np.where(current == 0, guess, current)  # like overwrite=False
        doc.from_array([SENT_START], starts.view(np.uint64))
        return doc


@Language.component("newsmon_newlines")
def _newline_sentences(doc: Doc) -> Doc:
    """Start a sentence after every line break: headings, bullets and live-blog
    entries often end without a full stop and must not merge with the next line."""
    n = len(doc)
    if n < 2:
        return doc
    cols = doc.to_array([ORTH, IS_SPACE, SENT_START]).reshape(n, 3)
    # Only space tokens can hold a line break: visit those, not every token.
    spaces = np.flatnonzero(cols[:-1, 1]).tolist()
    if not spaces:
        return doc
    # Work on the SENT_START column (1 start, -1 inside, 0 unset), written back
    # once: Token.is_sent_start's setter scans the whole doc on every call.
    orths = cols[:, 0].tolist()
    starts = cols[:, 2].view(np.int64).tolist()
    strings, changed = doc.vocab.strings, False
    for i in spaces:
        if "\n" in strings[orths[i]]:
            if i > 0 and starts[i] == 1:
                starts[i] = -1  # a line break alone is no sentence
            starts[i + 1] = 1
            changed = True
    if changed:
        doc.from_array([SENT_START], np.array(starts, dtype=np.int64).view(np.uint64))
    return doc


@dataclass(slots=True)
class FieldText:
    """One analysed field of an article: its Doc and sentence/word positions."""

    name: str  # title | summary | body
    doc: Doc
    sent_starts: list[int]  # token index of each sentence's first token
    # Sentences that repeat an earlier one word for word (photo captions, "related"
    # links, live-blog chrome): their terms count once, at the first copy.
    repeated: frozenset[int] = frozenset()
    _word_pos: list[int] | None = field(default=None, repr=False)
    # The analysed string (equal to doc.text, which spaCy rebuilds token by token
    # on every access): regex leaves and evidence read it.
    _text: str | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.doc.text
        return self._text

    def sentence_of(self, token_i: int) -> int:
        return max(0, bisect_right(self.sent_starts, token_i) - 1)

    def sentence_span(self, index: int) -> tuple[int, int]:
        """Character span of sentence ``index`` (whitespace trimmed)."""
        start = self.sent_starts[index]
        end = self.sent_starts[index + 1] if index + 1 < len(self.sent_starts) else len(self.doc)
        span = self.doc[start:end]
        text = span.text
        lead = len(text) - len(text.lstrip())
        return span.start_char + lead, span.start_char + len(text.rstrip())

    def word_pos(self, token_i: int) -> int:
        """Number of word tokens (not punctuation or space) before ``token_i``."""
        if self._word_pos is None:
            flags = self.doc.to_array([IS_PUNCT, IS_SPACE]).reshape(-1, 2)
            words = (flags.sum(axis=1) == 0).astype(np.int64)
            self._word_pos = [0, *np.cumsum(words).tolist()]
        return self._word_pos[token_i]


@dataclass(slots=True)
class AnalysedArticle:
    fields: list[FieldText]

    def field(self, name: str) -> FieldText | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


def normalise_text(text: str) -> str:
    """The text as analysed: CRLF and no-break spaces folded, glued words split."""
    text = text.replace("\r\n", "\n").replace("\u00a0", " ")
    text = _GLUED_TIME.sub(" ", text)
    return _GLUED_SENTENCE.sub(" ", text)


def _summary_repeats_body(summary: str, body: str) -> bool:
    """Feeds often put the lede in the summary; counting it twice would inflate scores."""
    s = " ".join(summary.split())[:200].lower()
    return len(s) >= 20 and s in " ".join(body[:5000].split()).lower()


def _sentence_starts(doc: Doc) -> list[int]:
    """First token of each sentence, as ``doc.sents`` has them (token 0 always)."""
    if not len(doc):
        return [0]
    flags = doc.to_array(SENT_START)
    return [0, *(np.flatnonzero(flags[1:] == 1) + 1).tolist()]


class Analyser:
    """A spaCy pipeline that turns an Article's fields into analysed Docs."""

    def __init__(self, model: str | None = None) -> None:
        self.model_requested = model
        self.model_name: str | None = None
        trained = self._trained(model) if model else None
        if trained is None:
            self.nlp = spacy.blank("en")
            self.nlp.add_pipe("newsmon_sentencizer", name="sentencizer")
        else:
            self.nlp = trained
            self.nlp.add_pipe("newsmon_sentencizer", name="sentencizer", first=True)
        self.nlp.add_pipe("newsmon_newlines", after="sentencizer")
        # Last, so a trained NER still sees spaCy's own norms as features.
        self.nlp.add_pipe("newsmon_norms", last=True)
        self.has_entities = "ner" in self.nlp.pipe_names

    def _trained(self, model: str) -> Language | None:
        try:
            nlp = spacy.load(model, exclude=_UNUSED)
        except OSError:
            log.warning("spaCy pipeline %r is not installed; using the blank English "
                        "pipeline (entities only from the gazetteer)", model)
            return None
        self.model_name = f"{model} {nlp.meta.get('version', '?')}"
        return nlp

    def describe(self) -> str:
        if self.model_name:
            return f"{self.model_name} (NER)" if self.has_entities else self.model_name
        return "blank en + lookup lemmatizer"

    def add_gazetteer(self, names: dict[str, tuple[str, ...]]) -> None:
        """Add an EntityRuler with ``label -> names`` (case-insensitive phrases).

        With a trained NER the ruler runs first, so a gazetteer name wins.
        """
        if not names or "entity_ruler" in self.nlp.pipe_names:
            return
        where = {"before": "ner"} if "ner" in self.nlp.pipe_names else {"before": "newsmon_norms"}
        ruler = self.nlp.add_pipe(
            "entity_ruler", config={"phrase_matcher_attr": "LOWER", "validate": True}, **where
        )
        ruler.add_patterns(  # type: ignore[attr-defined]
            [{"label": label, "pattern": n} for label, ns in names.items() for n in ns]
        )

    def analyse_fields(self, title: str, summary: str, body: str) -> AnalysedArticle:
        parts = [("title", title), ("summary", summary), ("body", body)]
        if summary and body and _summary_repeats_body(summary, body):
            parts = [("title", title), ("body", body)]
        parts = [(n, normalise_text(t[:MAX_FIELD_CHARS])) for n, t in parts if t and t.strip()]
        docs = self.nlp.pipe([t for _, t in parts])
        fields: list[FieldText] = []
        for (name, text), doc in zip(parts, docs, strict=True):
            starts = _sentence_starts(doc)
            # Sentence texts sliced from the string by character offsets: Span.text
            # would rebuild each one token by token. Whitespace is normalised away.
            idx = doc.to_array(IDX).tolist() if len(doc) else [0]
            bounds = [idx[s] for s in starts] + [len(text)]
            repeated: set[int] = set()
            seen: set[str] = set()
            for i in range(len(starts)):
                key = " ".join(text[bounds[i]:bounds[i + 1]].lower().split())
                if len(key) > 20 and key in seen:
                    repeated.add(i)
                seen.add(key)
            fields.append(FieldText(name=name, doc=doc, sent_starts=starts,
                                    repeated=frozenset(repeated), _text=text))
        return AnalysedArticle(fields=fields)

    def analyse(self, article: Article) -> AnalysedArticle:
        return self.analyse_fields(article.title or "", article.summary or "", article.body or "")
