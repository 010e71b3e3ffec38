"""Which language an article is written in, when its page or feed does not say (or says wrong).

``resolve_language(hint, text)`` is what the extract stage and the analysers call:
a page's ``<html lang>`` or feed's ``language`` (the hint) is trusted when the
text agrees with it, and replaced when it plainly does not (a page tagged ``en``
whose text is Cyrillic; a ``ru`` feed carrying Ukrainian). ``detect_language(text)``
decides from the text alone.

Detection is a letter heuristic first: Cyrillic against Latin script, then the
letters and short words only one of the two languages has (Ukrainian і ї є ґ,
an apostrophe inside a word, що/та/це; Russian ы э ъ ё, что/это/как). It never
took Russian for Ukrainian or back on the shared sets (bench/langdetect_bench.py)
but abstains on short snippets with no telling letter; those go to the optional
``lingua-language-detector`` (``newsmon[langdetect]``: Apache-2.0, its models
inside the wheel, nothing downloaded), in low-accuracy mode and restricted to
English, Russian, Ukrainian and the Cyrillic look-alikes (which come out as None
rather than as Russian or Ukrainian). Without lingua the heuristic's guess stands.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from monitor._optional import require
from monitor.analysis.languages import primary_language
from monitor.errors import MissingDependencyError

log = logging.getLogger(__name__)

DETECTED = ("en", "ru", "uk")  # what detection can answer (besides None)
SAMPLE_CHARS = 5000  # letters counted: enough to be sure, cheap on a long article
_LINGUA_CHARS = 2000

_CYRILLIC = re.compile("[\u0400-\u04ff]")
_LATIN = re.compile("[a-z]")
_WORD = re.compile(r"[^\W\d_]+(?:['’ʼ][^\W\d_]+)?")
_UK_LETTERS = "іїєґ"
_RU_LETTERS = "ыэъё"
# Ukrainian writes an apostrophe inside words (п'ять, перемир'я, з'їзд); Russian does not.
_APOSTROPHE_WORD = re.compile("[бвгґдзкмнпрстфхцчшщ]['’ʼ`][яюєї]")
# Frequent words with no marker letter that only one of the two languages uses.
_UK_WORDS = frozenset({"та", "що", "це", "як", "але", "або", "щоб", "вже", "ще", "він", "вона",
                       "вони", "ми", "має", "буде", "після", "тому", "цього", "його", "також"})
_RU_WORDS = frozenset({"и", "что", "это", "как", "но", "или", "чтобы", "уже", "еще", "он", "она",
                       "они", "мы", "его", "также", "будет", "после", "того", "этого", "при", "где"})
# Letters of Belarusian, Serbian, Macedonian, Kazakh: such a text is left to lingua.
_OTHER_CYRILLIC = "ўјљњђћџѓќѕәғқңөұүһ"
_EN_WORDS = frozenset({"the", "and", "of", "to", "is", "that", "for", "with", "was", "by", "from",
                       "are", "has", "have", "said", "will", "this", "which", "would", "on", "in"})
_LOOKALIKES = ("be", "bg", "mk", "sr", "kk")  # lingua may answer these: they mean "not ours"


def _marker_scores(sample: str) -> tuple[int, int]:
    """(Ukrainian, Russian) evidence in a lower-cased Cyrillic sample."""
    uk = sum(sample.count(c) for c in _UK_LETTERS) + 2 * len(_APOSTROPHE_WORD.findall(sample))
    # Russian markers are rarer (ы ~1.9% of letters against і's ~5.5%): weighted 3x.
    ru = 3 * sum(sample.count(c) for c in _RU_LETTERS)
    for word in _WORD.findall(sample[:1500]):
        if word in _UK_WORDS:
            uk += 2
        elif word in _RU_WORDS:
            ru += 2
    return uk, ru


def script_guess(text: str) -> tuple[str | None, int]:
    """The heuristic alone: its guess and how sure it is (0 unsure; 1 sure; 2 very sure)."""
    sample = text[:SAMPLE_CHARS].lower()
    cyrillic = len(_CYRILLIC.findall(sample))
    latin = len(_LATIN.findall(sample))
    if cyrillic + latin < 3:
        return None, 0
    if cyrillic >= latin:
        uk, ru = _marker_scores(sample)
        if uk == ru:
            return None, 0
        lang = "uk" if uk > ru else "ru"
        high, low = max(uk, ru), min(uk, ru)
        foreign = any(c in sample for c in _OTHER_CYRILLIC) or (
            sample.count("ъ") >= 2 and "ы" not in sample and "э" not in sample)  # Bulgarian
        if foreign or high < 3 or high < 3 * low:
            return lang, 0
        return lang, 2 if high >= 12 and high >= 5 * low else 1
    words = _WORD.findall(sample)
    english = [w for w in words if w in _EN_WORDS]
    # German, Dutch or Italian share "in", "on", "a": two distinct hits, 1 word in 12.
    if len(set(english)) >= 2 and len(english) * 12 >= len(words):
        return "en", 2 if len(english) >= 6 else 1
    return ("en" if english else None), 0


@functools.cache
def _lingua() -> Any | None:
    """lingua's detector (low-accuracy mode, a few languages), or None when not installed."""
    try:
        lingua = require("lingua", extra="langdetect", purpose="language detection of short texts")
    except MissingDependencyError as exc:
        log.info("%s; short texts are judged by the letter heuristic alone", exc)
        return None
    codes = [lingua.IsoCode639_1.from_str(c) for c in (*DETECTED, *_LOOKALIKES)]
    return lingua.LanguageDetectorBuilder.from_iso_codes_639_1(*codes) \
        .with_low_accuracy_mode().build()


def _statistical(text: str) -> str | None:
    """lingua's answer: one of ``DETECTED``, ``"other"``, or None (not installed or undecided)."""
    detector = _lingua()
    if detector is None:
        return None
    found = detector.detect_language_of(text[:_LINGUA_CHARS])
    if found is None:
        return None
    code = str(found.iso_code_639_1.name).lower()
    return code if code in DETECTED else "other"


def detect_language(text: str) -> str | None:
    """The language of ``text``: ``"en"``, ``"ru"``, ``"uk"``, or None (unknown or another)."""
    guess, sureness = script_guess(text)
    if sureness:
        return guess
    found = _statistical(text)
    if found == "other":
        return None
    return found or guess


def resolve_language(hint: str | None, text: str) -> str | None:
    """The article's language: the ``hint`` (any tag: ``uk-UA``, ``EN``) unless the text
    plainly says otherwise, else what the text says. Primary subtag or None.

    Overridden: a Latin-script hint on Cyrillic text and a ``ru``/``uk`` hint on Latin
    text (a template's default tag), a ``ru`` hint on text that is very surely
    Ukrainian and back (bilingual sites tag both editions alike). A hint naming a
    language detection does not know (``de``, ``fr``) stands unless the text is Cyrillic.
    """
    code = primary_language(hint)
    if code is None:
        return detect_language(text)
    guess, sureness = script_guess(text)
    if guess is None or guess == code:
        return code
    cyrillic_hint = code in ("ru", "uk", "be", "bg", "mk", "sr", "kk")
    if guess in ("ru", "uk") and not cyrillic_hint:
        # Cyrillic text on a page tagged en (or de): what it is, not what the tag says.
        return guess if sureness else (detect_language(text) or code)
    if guess == "en" and code in ("ru", "uk"):
        return "en" if sureness else code
    if guess in ("ru", "uk") and code in ("ru", "uk") and sureness == 2:
        return guess
    return code
