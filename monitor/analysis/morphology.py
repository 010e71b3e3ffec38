"""Russian and Ukrainian lemmas: pymorphy3 with a dictionary, called per distinct word.

pymorphy3 through spaCy's lemmatizer pipe costs about 100 ms per 1,000 words;
called once per distinct word and cached it costs microseconds once a worker
has seen the day's vocabulary (measured in docs/languages.md). Which source a
language uses is decided when its analyser is built:

- Russian: pymorphy3 + pymorphy3-dicts-ru (``newsmon[ru]``; code MIT, data
  OpenCorpora, CC BY-SA). Missing → a warning naming the extra, and the
  suffix stemmer (``monitor.analysis.stemmer``), so a worker never crashes.
- Ukrainian: the suffix stemmer by default. pymorphy3-dicts-uk is used only
  when installed (``newsmon[uk-dict]``): its data derives from VESUM, CC BY-NC-SA
  (non-commercial), so installing it is the user's decision, never ours.

Every lemma function lower-cases, folds the apostrophes ' ’ ʼ to ``'`` (the
dictionary knows only the ASCII one) and, for Russian, ё to е, so rules need
not spell either.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from monitor._optional import require
from monitor.analysis.stemmer import APOSTROPHES, russian_stemmer, ukrainian_stemmer
from monitor.errors import MissingDependencyError

log = logging.getLogger(__name__)

LemmaFn = Callable[[str], str]
CACHE_WORDS = 50_000  # distinct words memoised per lemma function (a worker's daily vocabulary)
EXTRAS = {"ru": "ru", "uk": "uk-dict"}  # the pip extra that brings each dictionary
_HAS_CYRILLIC = re.compile("[\u0400-\u04ff]").search


def morph_analyzer(lang: str) -> Any:
    """pymorphy3's analyser for ``lang``; MissingDependencyError naming the extra if absent."""
    extra = EXTRAS[lang]
    purpose = f"{'Russian' if lang == 'ru' else 'Ukrainian'} lemmas"
    pymorphy3 = require("pymorphy3", extra=extra, purpose=purpose)
    require(f"pymorphy3_dicts_{lang}", extra=extra, purpose=purpose)
    # It logs two INFO lines per dictionary load (every worker, every `newsmon check`).
    logging.getLogger("pymorphy3").setLevel(logging.WARNING)
    return pymorphy3.MorphAnalyzer(lang=lang)


def pymorphy_lemmas(morph: Any, *, fold_yo: bool) -> LemmaFn:
    """A cached ``word -> lower-cased lemma`` over a pymorphy3 analyser (first parse wins,
    except that a first name or patronymic reading loses to any other: "Києві" is
    Київ, not the legendary Кий)."""

    @functools.lru_cache(maxsize=CACHE_WORDS)
    def lemma(word: str) -> str:
        w = word.lower().translate(APOSTROPHES)
        if not _HAS_CYRILLIC(w):
            return w  # numbers, Latin names, punctuation: their own lemma
        parses = morph.parse(w)
        best = parses[0]
        if len(parses) > 1 and ("Name" in best.tag or "Patr" in best.tag):
            for p in parses[1:]:
                if p.normal_form != best.normal_form and "Name" not in p.tag and "Patr" not in p.tag:
                    best = p
                    break
        out: str = best.normal_form.translate(APOSTROPHES)
        return out.replace("ё", "е") if fold_yo else out

    return lemma


def cached(fn: LemmaFn) -> LemmaFn:
    return functools.lru_cache(maxsize=CACHE_WORDS)(fn)


def _labelled(fn: LemmaFn, source: str) -> LemmaFn:
    fn.source = source  # type: ignore[attr-defined]  # read by Analyser.describe
    return fn


def russian_lemmas() -> LemmaFn:
    """pymorphy3 + the OpenCorpora dictionary; the suffix stemmer when they are missing."""
    try:
        morph = morph_analyzer("ru")
    except MissingDependencyError as exc:
        log.warning("%s; Russian articles use the suffix stemmer meanwhile", exc)
        return _labelled(cached(russian_stemmer()), "suffix stemmer (pymorphy3 missing)")
    return _labelled(pymorphy_lemmas(morph, fold_yo=True), "pymorphy3 lemmas")


def ukrainian_lemmas() -> LemmaFn:
    """The suffix stemmer; pymorphy3-dicts-uk's lemmas only when the user installed it."""
    try:
        morph = morph_analyzer("uk")
    except MissingDependencyError:
        return _labelled(cached(ukrainian_stemmer()), "suffix stemmer")
    return _labelled(pymorphy_lemmas(morph, fold_yo=False), "pymorphy3 lemmas (uk-dict)")


def ukrainian_stems() -> LemmaFn:
    """The suffix stemmer even when the dictionary is installed (benchmarks, tests)."""
    return _labelled(cached(ukrainian_stemmer()), "suffix stemmer")
