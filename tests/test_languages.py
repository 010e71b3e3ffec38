"""Analysers per language: the registry, the English fallback, rules compiled per language."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from monitor.analysis.analyser import Analyser, Analysers
from monitor.analysis.languages import (
    ENGLISH,
    FALLBACK_LANGUAGE,
    LanguageSupport,
    LemmaFn,
    english_lemmas,
    primary_language,
    table_lemmas,
)
from monitor.rules.classifier import Classifier
from monitor.rules.ruleset import load_rules
from tests.helpers.rules import article, one_topic, write_rules

# A tiny German lemma table: enough to show that German word forms match German rule terms.
GERMAN_TABLE = {"Verhandlungen": "Verhandlung", "verhandlungen": "verhandlung",
                "Waffenruhen": "Waffenruhe", "begannen": "beginnen"}


def german_lemmas() -> LemmaFn:
    return table_lemmas(GERMAN_TABLE)


GERMAN = LanguageSupport(code="de", name="German", blank="de", lemmas=german_lemmas,
                         lemma_source="test lemma table")


@pytest.mark.parametrize(("tag", "primary"), [
    ("en", "en"), ("en-GB", "en"), ("EN_us", "en"), (" uk-UA ", "uk"), ("ru", "ru"),
    ("zh-Hant-TW", "zh"), ("fil", "fil"), ("x-klingon", None), ("i-default", None),
    ("und", None), ("", None), (None, None), ("e", None), ("*", None), ("en1", None),
])
def test_primary_language(tag: str | None, primary: str | None) -> None:
    assert primary_language(tag) == primary


def test_table_lemmas_try_the_lower_cased_word_and_keep_unknown_words() -> None:
    lemma = table_lemmas({"talks": "talk", "Talked": "Talk"})
    assert lemma("talks") == "talk"
    assert lemma("Talks") == "talk"  # not in the table as written: lower-cased
    assert lemma("Talked") == "Talk"
    assert lemma("Kyiv") == "Kyiv"


def test_english_is_built_once_and_judges_every_unknown_language() -> None:
    analysers = Analysers()
    assert analysers.languages == ("en", "ru", "uk")
    assert not analysers._built  # nothing is built before it is needed
    english = analysers.get("en")
    for tag in ("en", "en-GB", None, "", "fr", "und", "x-private"):
        assert analysers.get(tag) is english
    assert list(analysers._built.values()) == [english]
    assert english_lemmas() is english_lemmas()  # the lookup table is loaded once per process
    assert english.language == "en" and english.describe() == "blank en + lookup lemmatizer"


def test_an_unknown_language_falls_back_to_english_and_says_so(tmp_path: Path) -> None:
    clf = Classifier(load_rules([write_rules(tmp_path, one_topic("[ceasefire]"))]))
    french = article("Les deux camps ont signé un ceasefire hier.", language="fr-FR")
    analysed = clf.analyse(french)
    assert analysed.language == FALLBACK_LANGUAGE
    assert analysed.article_language == "fr"
    assert analysed.language_fallback
    [match] = clf.classify(french)
    assert match.language == "en"
    [exp] = clf.explain(french)
    assert (exp.language, exp.article_language) == ("en", "fr")
    assert "'fr' has no analyser; judged as 'en'" in exp.format()

    # No language given: detected from the text (monitor.analysis.detect) ...
    untagged = clf.analyse(article("The two sides said a ceasefire was agreed."))
    assert (untagged.language, untagged.article_language, untagged.language_fallback) == (
        "en", "en", False)
    # ... and when the text says nothing either, the fallback judges it and says so.
    unknown = clf.analyse(article("2024 — 12:45"))
    assert (unknown.language, unknown.article_language, unknown.language_fallback) == ("en", None, True)
    english = clf.analyse(article("A ceasefire.", language="en-US"))
    assert (english.language, english.article_language, english.language_fallback) == (
        "en", "en", False)
    [exp] = clf.explain(article("A ceasefire.", language="en-US"))
    assert "has no analyser" not in exp.format()
    assert list(clf._compiled) == ["en"]  # one compilation serves all of them


GERMAN_RULES = one_topic("[Verhandlung, Waffenruhe]", threshold=2)


def test_a_second_language_gets_its_own_analyser_rules_and_word_forms(tmp_path: Path) -> None:
    analysers = Analysers([ENGLISH, GERMAN])
    clf = Classifier(load_rules([write_rules(tmp_path, GERMAN_RULES)]), analysers)
    assert list(clf._compiled) == ["en"]  # the fallback at once; German on first use
    text = "Die Verhandlungen über Waffenruhen begannen am Montag."
    german = article(text, language="de-DE")

    [match] = clf.classify(german)
    assert match.topic == "t" and match.language == "de"
    assert {h.text for h in match.hits} == {"Verhandlungen", "Waffenruhen"}  # German word forms
    assert list(clf._compiled) == ["en", "de"]
    de, en = clf._compiled["de"], clf._compiled["en"]
    assert de.analyser is analysers.get("de") and en.analyser is analysers.get("en")
    assert de.analyser.nlp.lang == "de" and en.analyser.nlp.lang == "en"
    assert de.analyser.nlp.vocab is not en.analyser.nlp.vocab  # matchers bound to their own vocab
    assert de.analyser.describe() == "blank de + test lemma table"

    analysed = clf.analyse(german)
    assert (analysed.language, analysed.language_fallback) == ("de", False)
    assert [t.lemma_ for t in analysed.fields[0].doc][:4] == ["Die", "Verhandlung", "über", "Waffenruhe"]
    # The same words judged as English: the English lemmas do not know them.
    assert clf.classify(article(text)) == []
    assert clf.classify(article(text, language="fr")) == []
    # A second German article reuses the analyser and the compiled rules.
    clf.classify(article("Verhandlungen, Waffenruhen.", language="de"))
    assert len(analysers._built) == 2 and list(clf._compiled) == ["en", "de"]


def test_registering_languages() -> None:
    analysers = Analysers([ENGLISH])
    analysers.register(GERMAN)
    assert analysers.languages == ("en", "de")
    assert analysers.language_for("de-CH") == "de" and analysers.language_for("nl") == "en"
    analysers.get("de")
    with pytest.raises(ValueError, match="already built"):
        analysers.register(GERMAN)
    with pytest.raises(ValueError, match="fallback language 'en' is not registered"):
        Analysers([GERMAN])
    assert Analysers([GERMAN], fallback="de").get("en").language == "de"


def test_the_trained_pipeline_named_in_config_goes_to_english() -> None:
    analysers = Analysers.default("no_such_pipeline_xyz")
    english = analysers.get("en")
    assert english.support.model == "no_such_pipeline_xyz"
    assert english.describe() == "blank en + lookup lemmatizer"  # not installed: the blank one
    # A pickled registry (as a process pool sends it) keeps the request and builds afresh.
    clone = pickle.loads(pickle.dumps(analysers))
    assert clone.languages == ("en", "ru", "uk") and not clone._built
    assert clone.get("en").support.model == "no_such_pipeline_xyz"


def test_a_classifier_given_one_analyser_uses_it_for_its_language(tmp_path: Path) -> None:
    analyser = Analyser()
    clf = Classifier(load_rules([write_rules(tmp_path, one_topic("[truce]"))]), analyser)
    assert clf.analyser is analyser
    assert clf.analysers.get("fr") is analyser
    clone = pickle.loads(pickle.dumps(clf))
    assert [m.topic for m in clone.classify(article("A truce.", language="en"))] == ["t"]
