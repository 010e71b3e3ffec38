"""A small suffix-stripping stemmer for Ukrainian and Russian (ours, MIT; no data files).

Ukrainian's default lemma source: the one Ukrainian dictionary for pymorphy3
derives from VESUM, whose data is CC BY-NC-SA (non-commercial), so it is only
an opt-in extra (``newsmon[uk-dict]``, see docs/languages.md). Russian uses it
only when pymorphy3 or its dictionary is missing.

A "lemma" here is a stem: the word lower-cased, apostrophes folded to ``'``,
with the longest inflectional ending removed that leaves at least
``MIN_STEM`` letters. Rule terms are stemmed by the same function when they are
compiled, so ``переговори``, ``переговорів`` and ``переговорах`` in a text all
meet the term ``переговори`` (stem ``переговор``). What a stemmer cannot see
-- vowel alternation (Київ/Києва, Харків/Харкова), consonant change
(допомога/допомозі) -- is mended for a few words the war's coverage needs
(``_UK_STEMS``); elsewhere a rule writes a wildcard (``харк*``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

MIN_STEM = 3  # letters kept: "ЗСУ", "мир", "газ" stay whole

APOSTROPHES = str.maketrans({c: "'" for c in "’ʼ`′‘"})
_HAS_CYRILLIC = re.compile("[\u0400-\u04ff]").search

# Inflectional endings (nouns, adjectives, pronoun-like adjectives, participles,
# verbs), tried longest first. Derivational suffixes are kept: "мирний" and
# "мир" stay apart, as rules expect.
_UK_ENDINGS = (
    # verbs (infinitive, reflexive, present, past)
    "уватися", "юватися", "атися", "ятися", "итися", "ітися", "утися",
    "ується", "юється", "ається", "яється", "ються", "уться", "ється", "еться", "иться", "іться",
    "ться", "тися", "тись", "лися", "лась", "лося", "вся", "ся",
    "уватиме", "атиме", "итиме", "ітиме",
    "ували", "ювали", "увала", "ювала", "ували", "ував", "ював",
    "ували", "ують", "юють", "ають", "яють", "ують", "ють", "уть", "ять", "ать", "ить", "іть",
    "ємо", "емо", "имо", "імо", "єте", "ете", "ите", "іте",
    "ати", "яти", "ити", "іти", "ути",
    "али", "яли", "или", "ала", "яла", "ила", "ало", "ило", "ли", "ла", "ло",
    "ав", "яв", "ив", "ів",
    "ує", "ює", "ає", "яє", "ить", "ать", "ть",
    # adjectives and participles
    "ього", "ьому", "ого", "ому", "ими", "іми", "ої", "ою", "ую", "юю", "ий", "ій", "их", "іх",
    "им", "ім", "ая", "яя", "еє",
    # nouns
    "ями", "ами", "ові", "еві", "єві", "ям", "ам", "ях", "ах", "ів", "їв", "ей", "єю", "ею",
    "ією", "ом", "ем", "єм", "ою", "ію", "ія", "ії", "ій",
    "а", "я", "у", "ю", "і", "ї", "о", "е", "є", "и", "ь", "й",
)
_RU_ENDINGS = (
    "иваться", "ываться", "оваться", "еваться", "аться", "яться", "иться", "еться", "уться",
    "ются", "ется", "ится", "ятся", "атся", "утся", "тся", "ться", "лся", "лась", "лось", "лись",
    "ись", "сь", "ся",
    "ивали", "ывали", "овали", "ивал", "ывал", "овал", "ует", "уют", "ают", "яют", "ят", "ат",
    "ешь", "ишь", "ете", "ите", "ем", "им", "ет", "ит", "ут", "ют",
    "ать", "ять", "ить", "еть", "уть", "ть",
    "али", "яли", "или", "ели", "ала", "яла", "ила", "ела", "ало", "ило", "ли", "ла", "ло", "ал", "ил",
    "ого", "его", "ому", "ему", "ыми", "ими", "ая", "яя", "ое", "ее", "ой", "ей", "ую", "юю",
    "ый", "ий", "ых", "их", "ым", "им",
    "иями", "ями", "ами", "иях", "ях", "ах", "ием", "ям", "ам", "ов", "ев", "ей", "ой", "ом", "ем",
    "ию", "ия", "ие", "ий", "ии", "ью",
    "а", "я", "у", "ю", "ы", "и", "о", "е", "ь", "й",
)

# Stems a plain suffix cut gets wrong, mapped to the stem of the word's dictionary
# form: vowel alternation and consonant change in names and words the seed pack needs.
_UK_STEMS = {
    "києв": "київ", "київськ": "київськ", "харков": "харків", "львов": "львів",
    "допомоз": "допомог", "вогон": "вогн", "вогонь": "вогн", "стол": "стіл",
    "збро": "збр",
}
_RU_STEMS = {"огон": "огн", "огонь": "огн"}


def _stemmer(endings: tuple[str, ...], fixes: dict[str, str], fold_yo: bool) -> Callable[[str], str]:
    by_length = sorted(set(endings), key=len, reverse=True)

    def stem(word: str) -> str:
        w = word.lower().translate(APOSTROPHES)
        if fold_yo:
            w = w.replace("ё", "е")
        if not _HAS_CYRILLIC(w):
            return w  # numbers, Latin names, punctuation: their own stem
        for ending in by_length:
            if w.endswith(ending) and len(w) - len(ending) >= MIN_STEM:
                w = w[: -len(ending)]
                break
        if w.endswith("'"):
            w = w[:-1]  # перемир'я -> перемир
        return fixes.get(w, w)

    return stem


def ukrainian_stemmer() -> Callable[[str], str]:
    return _stemmer(_UK_ENDINGS, _UK_STEMS, fold_yo=False)


def russian_stemmer() -> Callable[[str], str]:
    return _stemmer(_RU_ENDINGS, _RU_STEMS, fold_yo=True)
