"""The analyse stage: tokens, sentences, lemmas and (optionally) entities, per language.

An ``Analyser`` is one language's pipeline, built as its ``LanguageSupport``
(``monitor.analysis.languages``) says. English's is ``spacy.blank("en")`` +
sentencizer + a lookup lemmatizer (``spacy-lookups-data``): about 5 ms per
1,000 words and no download. A trained pipeline named in config
(``en_core_web_sm``) is used when installed, for its named entities; otherwise
entity conditions rely on the rule files' gazetteer, added as an
``EntityRuler`` by ``monitor.rules.classifier``. ``Analysers`` holds one
analyser per language, built on first use.

Every token's ``norm_`` is set to its lower-cased lemma (from the language's
lemma function), so one ``PhraseMatcher(attr="NORM")`` matches all word forms
of all rule terms in one pass, independent of the pipeline's own
(context-dependent) lemmatizer.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import spacy
from spacy.attrs import IDX, IS_PUNCT, IS_SPACE, LEMMA, NORM, ORTH, SENT_START
from spacy.language import Language
from spacy.pipeline import Sentencizer
from spacy.strings import get_string_id
from spacy.tokens import Doc

from monitor.analysis.detect import SAMPLE_CHARS, resolve_language
from monitor.analysis.languages import (
    ENGLISH,
    FALLBACK_LANGUAGE,
    SUPPORTED,
    LanguageSupport,
    LemmaFn,
    primary_language,
)
from monitor.models import Article

log = logging.getLogger(__name__)

MAX_FIELD_CHARS = 300_000  # ~50,000 words: longer bodies are cut (a worker must not stall)
# Memo of word -> (lemma, norm) hashes per analyser: a worker sees the same few
# thousand words all day; cleared when full so memory stays bounded.
MAX_NORM_CACHE = 50_000  # ~11 MB
# Components of trained pipelines we do not use: entities are the only reason to load one.
_UNUSED = ["tagger", "parser", "attribute_ruler", "lemmatizer", "morphologizer", "senter"]

# Live blogs glue timestamps to words ("10:45Ceasefire talks...", "10:45Переговоры")
# and scrapers glue sentences ("said.The", "заявил.Путин"); split both so tokens and
# sentences come out right. Latin and Cyrillic (Russian and Ukrainian letters).
_UPPER = "A-ZА-ЯЁІЇЄҐ"
_LOWER = "a-zа-яёіїєґ"
_GLUED_TIME = re.compile(rf"(?<=\d)(?=[{_UPPER}][{_LOWER}])")
_GLUED_SENTENCE = re.compile(rf"(?<=[{_LOWER}]{{2}}[.!?])(?=[{_UPPER}][{_LOWER}])")


def _own_lemma(word: str) -> str:
    return word


@Language.factory("newsmon_norms")
def _make_norms(nlp: Language, name: str) -> _LemmaNorms:
    # The lemma function is no spaCy config value (configs hold plain data): the
    # Analyser hands it over with ``use`` right after adding the component.
    return _LemmaNorms()


class _LemmaNorms:
    """Set ``lemma_`` and ``norm_`` (lower-cased lemma) from a lemma function."""

    def __init__(self) -> None:
        self.lemma: LemmaFn = _own_lemma
        # ORTH hash -> (LEMMA hash, NORM hash); see MAX_NORM_CACHE.
        self._cache: dict[int, tuple[int, int]] = {}

    def use(self, lemma: LemmaFn) -> None:
        self.lemma = lemma
        self._cache.clear()

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
        doc.from_array([SENT_START], starts.view(np.uint64))  # type: ignore[arg-type]  # spaCy's stubs say int32; it takes uint64 hashes
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
        doc.from_array([SENT_START], np.array(starts, dtype=np.int64).view(np.uint64))  # type: ignore[arg-type]  # spaCy's stubs say int32; it takes uint64 hashes
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
    language: str = FALLBACK_LANGUAGE  # the language whose analyser made ``fields``
    article_language: str | None = None  # the article's own (primary subtag), if known

    @property
    def language_fallback(self) -> bool:
        """True when the article's language was unknown or had no analyser of its own."""
        return self.article_language != self.language

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
    """One language's spaCy pipeline: turns an Article's fields into analysed Docs.

    ``model`` (a trained pipeline, used when installed) overrides the support's own.
    """

    def __init__(self, model: str | None = None, *, support: LanguageSupport = ENGLISH) -> None:
        model = model or support.model
        # The support as built (with the model asked for): a pickled registry rebuilds the same.
        self.support = replace(support, model=model)
        self.language = support.code
        self.model_name: str | None = None
        trained = self._trained(model) if model else None
        if trained is None:
            self.nlp = spacy.blank(support.blank)
            self.nlp.add_pipe("newsmon_sentencizer", name="sentencizer")
        else:
            self.nlp = trained
            self.nlp.add_pipe("newsmon_sentencizer", name="sentencizer", first=True)
        self.nlp.add_pipe("newsmon_newlines", after="sentencizer")
        # Last, so a trained NER still sees spaCy's own norms as features.
        norms = self.nlp.add_pipe("newsmon_norms", last=True)
        lemma = support.lemmas()
        norms.use(lemma)  # type: ignore[attr-defined]  # our own component, typed as spaCy's Callable
        # Where the lemmas came from, as built (a missing dictionary falls back to a stemmer).
        self.lemma_source: str = getattr(lemma, "source", support.lemma_source)
        self.has_entities = "ner" in self.nlp.pipe_names
        self._primed: set[str] = set()  # chunks the tokenizer has cached (see _prime_tokenizer)

    def _prime_tokenizer(self, texts: list[str]) -> None:
        """Tokenize each chunk (whitespace-separated) not seen before on its own once.

        spaCy's tokenizer caches a chunk's tokens, but within one text it stops caching
        after the first special case (an exception such as "г." or "т.е."): the flag
        is not reset per chunk. Russian and Ukrainian texts hit one early, so most of
        their words were split by the affix rules on every article (half the analysis
        time). A chunk tokenized alone is cached unless it is itself special; the
        tokens are the same (special cases are still looked up first). Stops when the
        tokenizer's cache is full, as it would.
        """
        tokenizer, primed = self.nlp.tokenizer, self._primed
        limit = getattr(tokenizer, "max_cache_size", 0)
        if len(primed) >= limit:
            return
        for text in texts:
            for chunk in set(text.split()) - primed:
                tokenizer(chunk)
                primed.add(chunk)

    def _trained(self, model: str) -> Language | None:
        try:
            nlp = spacy.load(model, exclude=_UNUSED)
        except OSError:
            log.warning("spaCy pipeline %r is not installed; using the blank %s "
                        "pipeline (entities only from the gazetteer)", model, self.support.name)
            return None
        self.model_name = f"{model} {nlp.meta.get('version', '?')}"
        return nlp

    def describe(self) -> str:
        if self.model_name:
            return f"{self.model_name} (NER)" if self.has_entities else self.model_name
        return f"blank {self.support.blank} + {self.lemma_source}"

    def add_gazetteer(self, names: dict[str, tuple[str, ...]]) -> None:
        """Add an EntityRuler with ``label -> names`` (case-insensitive phrases).

        With a trained NER the ruler runs first, so a gazetteer name wins.
        """
        if not names or "entity_ruler" in self.nlp.pipe_names:
            return
        before = "ner" if "ner" in self.nlp.pipe_names else "newsmon_norms"
        ruler = self.nlp.add_pipe(
            "entity_ruler", config={"phrase_matcher_attr": "LOWER", "validate": True},
            before=before,
        )
        ruler.add_patterns(  # type: ignore[attr-defined]  # add_pipe returns the EntityRuler, typed as Callable
            [{"label": label, "pattern": n} for label, ns in names.items() for n in ns]
        )

    def analyse_fields(self, title: str, summary: str, body: str) -> AnalysedArticle:
        parts = [("title", title), ("summary", summary), ("body", body)]
        if summary and body and _summary_repeats_body(summary, body):
            parts = [("title", title), ("body", body)]
        parts = [(n, normalise_text(t[:MAX_FIELD_CHARS])) for n, t in parts if t and t.strip()]
        self._prime_tokenizer([t for _, t in parts])
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
        return AnalysedArticle(fields=fields, language=self.language)

    def analyse(self, article: Article) -> AnalysedArticle:
        analysed = self.analyse_fields(article.title or "", article.summary or "", article.body or "")
        analysed.article_language = primary_language(article.language)
        return analysed


class Analysers:
    """The analysers of one process, one per language, each built on first use.

    An article's language picks its analyser; an unknown language, or one not
    registered, gets the ``fallback`` language's (``AnalysedArticle`` records
    which). Analysers are not shared between registries: a rule set adds its
    gazetteer to the pipelines it uses, so each ``Classifier`` has its own
    registry (a worker process has one classifier). Lemma tables are shared
    (see ``languages.english_lemmas``).
    """

    def __init__(self, languages: Iterable[LanguageSupport] = SUPPORTED,
                 fallback: str = FALLBACK_LANGUAGE) -> None:
        self._supports: dict[str, LanguageSupport] = {}
        self._built: dict[str, Analyser] = {}
        for support in languages:
            self.register(support)
        if fallback not in self._supports:
            raise ValueError(f"fallback language {fallback!r} is not registered")
        self.fallback = fallback

    @classmethod
    def default(cls, spacy_model: str | None = None) -> Analysers:
        """The supported languages; ``spacy_model`` (from config) is English's trained pipeline."""
        supports = {s.code: s for s in SUPPORTED}
        if spacy_model:
            supports[ENGLISH.code] = replace(supports[ENGLISH.code], model=spacy_model)
        return cls(supports.values())

    @classmethod
    def around(cls, analyser: Analyser) -> Analysers:
        """The supported languages, with ``analyser`` already built for its own."""
        supports = {s.code: s for s in SUPPORTED}
        supports[analyser.language] = analyser.support
        registry = cls(supports.values())
        registry._built[analyser.language] = analyser
        return registry

    def __reduce__(self) -> tuple[Any, ...]:
        # spaCy pipelines do not pickle: the copy builds its own on first use.
        return (Analysers, (tuple(self._supports.values()), self.fallback))

    def register(self, support: LanguageSupport) -> None:
        """Add (or replace, before it is built) the support of ``support.code``."""
        if support.code in self._built:
            raise ValueError(f"the {support.code!r} analyser is already built")
        self._supports[support.code] = support

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._supports)

    def language_for(self, language: str | None) -> str:
        """The registered language that judges an article in ``language`` (any tag)."""
        code = primary_language(language)
        return code if code in self._supports else self.fallback

    @staticmethod
    def article_language(article: Article) -> str | None:
        """The article's language as judged: its own tag unless the text plainly says
        otherwise (Cyrillic text on an ``en`` page), else what the text says."""
        sample = f"{article.title or ''}\n{(article.body or article.summary or '')[:SAMPLE_CHARS]}"
        return resolve_language(article.language, sample)

    def analyse(self, article: Article) -> AnalysedArticle:
        """``article`` analysed by the analyser of its (checked or detected) language."""
        language = self.article_language(article)
        analysed = self.get(language).analyse(article)
        analysed.article_language = primary_language(language)
        return analysed

    def get(self, language: str | None) -> Analyser:
        """The analyser for ``language`` (built now if it is the first use)."""
        code = self.language_for(language)
        analyser = self._built.get(code)
        if analyser is None:
            analyser = self._built[code] = Analyser(support=self._supports[code])
        return analyser
