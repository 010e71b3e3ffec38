"""The analyser: blank pipeline, lemmas/norms, sentences, fields."""

from __future__ import annotations

import time

from monitor.analysis.analyser import Analyser, normalise_text
from tests.helpers.rules import article


def test_blank_pipeline_describes_itself() -> None:
    analyser = Analyser()
    assert analyser.describe() == "blank en + lookup lemmatizer"
    assert not analyser.has_entities
    assert analyser.nlp.pipe_names[0] == "sentencizer"


def test_norms_are_lower_case_lookup_lemmas() -> None:
    doc = Analyser().analyse_fields("", "", "Negotiations: Talks pledged weapons.").fields[0].doc
    assert [t.norm_ for t in doc if not t.is_punct] == ["negotiation", "talk", "pledge", "weapon"]
    assert [t.lemma_ for t in doc][:1] == ["negotiation"]


def test_sentences_split_at_line_breaks_and_glued_text() -> None:
    body = "Headline without a stop\nFirst sentence. Second one.\n10:45Ceasefire talks begin"
    ft = Analyser().analyse_fields("", "", body).field("body")
    assert ft is not None
    sents = [ft.text[slice(*ft.sentence_span(i))] for i in range(len(ft.sent_starts))]
    assert sents == ["Headline without a stop", "First sentence.", "Second one.",
                     "10:45 Ceasefire talks begin"]
    assert normalise_text("said.The end") == "said. The end"


def test_fields_and_summary_dedup() -> None:
    analyser = Analyser()
    a = analyser.analyse(article("The body text goes on here.", title="T", summary="S"))
    assert [f.name for f in a.fields] == ["title", "summary", "body"]
    # a feed summary that repeats the body's start is not counted twice
    dup = analyser.analyse(article("The body text goes on here.", title="T",
                                   summary="The body text goes on"))
    assert [f.name for f in dup.fields] == ["title", "body"]
    empty = analyser.analyse(article("   "))
    assert empty.fields == []


def test_word_positions_skip_punctuation() -> None:
    ft = Analyser().analyse_fields("", "", "Aa, bb - cc.").field("body")
    assert ft is not None
    assert [ft.word_pos(i) for i in range(len(ft.doc) + 1)] == [0, 1, 1, 2, 2, 3, 3]


def test_analysis_is_fast_enough() -> None:
    analyser = Analyser()
    text = "Russia and Ukraine held peace talks in Istanbul on Tuesday. " * 100  # ~1,000 words
    analyser.analyse_fields("", "", text)  # warm up
    start = time.perf_counter()
    for _ in range(5):
        analyser.analyse_fields("", "", text)
    assert (time.perf_counter() - start) / 5 < 0.25  # measured ~10 ms; generous for CI


def test_huge_body_is_capped() -> None:
    from monitor.analysis.analyser import MAX_FIELD_CHARS

    ft = Analyser().analyse_fields("", "", "word " * (MAX_FIELD_CHARS // 2)).field("body")
    assert ft is not None and len(ft.text) <= MAX_FIELD_CHARS
