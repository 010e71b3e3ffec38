"""The languages newsmon can analyse, and how each one's pipeline is built.

A ``LanguageSupport`` says how to build one language's analyser: the blank
spaCy language to tokenise with, where its lemmas come from (a
``lemma(word) -> str`` callable, built on first use), and optionally a trained
pipeline to use instead when it is installed. ``SUPPORTED`` is what a default
``monitor.analysis.analyser.Analysers`` registry knows; an article in any other
language, or in none, is judged by the ``FALLBACK_LANGUAGE`` analyser and says so
(``AnalysedArticle.language_fallback``).

Adding a language is one ``LanguageSupport`` with a lemma source, added to
``SUPPORTED``. Russian and Ukrainian take their lemmas from
``monitor.analysis.morphology`` (pymorphy3, or a suffix stemmer; see
docs/languages.md). This module imports no spaCy, so the rule loader can read
``LANGUAGE_CODES`` cheaply.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from monitor.analysis.morphology import russian_lemmas, ukrainian_lemmas

LemmaFn = Callable[[str], str]  # a word as written -> its lemma (the word itself if unknown)

FALLBACK_LANGUAGE = "en"  # judges articles whose language is unknown or has no analyser

# A BCP 47 primary subtag: 2-3 letters (ISO 639), or 4-8 for the few registered ones.
_PRIMARY = re.compile(r"[a-z]{2,8}")
# "und" (undetermined), "mul" (several), "zxx" (no linguistic content), "mis" (uncoded):
# tags that name no language to analyse in.
_NO_LANGUAGE = frozenset({"und", "mul", "zxx", "mis"})


def primary_language(tag: str | None) -> str | None:
    """The primary subtag of a language tag, lower case: ``en-GB`` → ``en``,
    ``pt_BR`` → ``pt``. None for no tag, a private-use one (``x-…``, ``i-…``) or
    one that names no language (``und``)."""
    if not tag:
        return None
    primary = re.split(r"[-_]", tag.strip().lower(), maxsplit=1)[0]
    if not _PRIMARY.fullmatch(primary) or primary in _NO_LANGUAGE:
        return None
    return primary


def table_lemmas(table: Mapping[str, str]) -> LemmaFn:
    """A lemma function over a word → lemma table.

    Tables are case-sensitive ("Talks" is absent from English's), so the
    lower-cased word is tried too; a word in neither form is its own lemma.
    """
    get = table.get

    def lemma(word: str) -> str:
        found = get(word)
        if found is None:
            found = get(word.lower(), word)
        return found

    return lemma


@functools.cache
def english_lemmas() -> LemmaFn:
    """spacy-lookups-data's English lemma table (loaded once per process)."""
    from spacy.lookups import load_lookups  # here: importing spaCy costs a second

    return table_lemmas(load_lookups("en", ["lemma_lookup"]).get_table("lemma_lookup"))


@dataclass(frozen=True, slots=True)
class LanguageSupport:
    """How to build the analyser of one language."""

    code: str  # primary subtag, as ``primary_language`` gives it ("en")
    name: str  # for messages ("English")
    blank: str  # the spaCy language of the blank pipeline (``spacy.blank(blank)``)
    # Builds the lemma function; called once, when the language's analyser is built.
    # A module-level function, so an ``Analysers`` registry pickles (process pools).
    lemmas: Callable[[], LemmaFn]
    lemma_source: str = "lookup lemmatizer"  # for ``Analyser.describe``
    # A trained spaCy pipeline used instead of the blank one when installed (adds NER).
    model: str | None = None


ENGLISH = LanguageSupport(code="en", name="English", blank="en", lemmas=english_lemmas)

# Lemma sources are decided when the analyser is built (see morphology.py).
RUSSIAN = LanguageSupport(code="ru", name="Russian", blank="ru", lemmas=russian_lemmas,
                          lemma_source="pymorphy3 lemmas")
UKRAINIAN = LanguageSupport(code="uk", name="Ukrainian", blank="uk", lemmas=ukrainian_lemmas,
                            lemma_source="suffix stemmer")

SUPPORTED: tuple[LanguageSupport, ...] = (ENGLISH, RUSSIAN, UKRAINIAN)
LANGUAGE_CODES: tuple[str, ...] = tuple(s.code for s in SUPPORTED)  # what rule files may name
