"""The rule language, end to end: terms, groups, proximity, fields, scoring, scope."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers.rules import article, classifier, fired, one_topic

# --- terms -------------------------------------------------------------------------


def test_lemma_matching_finds_other_word_forms(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[negotiate, peace talk]"))
    assert fired(clf, article("Kyiv is negotiating.")) == {"t"}
    assert fired(clf, article("The negotiated text.")) == {"t"}
    assert fired(clf, article("Both sides held Peace Talks.")) == {"t"}  # case + plural
    assert fired(clf, article("A negotiator arrived.")) == set()  # a different word


def test_lemma_false_matches_the_exact_form_only(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{term: talks, lemma: false}]"))
    assert fired(clf, article("The talks resumed.")) == {"t"}
    assert fired(clf, article("He talked for an hour.")) == set()


def test_wildcard_matches_word_prefixes(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("['negotiat*']"))
    for text in ("negotiations", "Negotiators", "negotiating", "negotiate"):
        assert fired(clf, article(f"The {text} went on.")) == {"t"}, text
    assert fired(clf, article("The negation went on.")) == set()


def test_wildcard_inside_a_phrase(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("['peace negotiat*']"))
    assert fired(clf, article("Peace negotiators met.")) == {"t"}
    assert fired(clf, article("Negotiators met in peace.")) == set()


def test_case_sensitive_terms(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{term: US, case: true}]"))
    assert fired(clf, article("The US sent envoys.")) == {"t"}
    assert fired(clf, article("Tell us more.")) == set()
    insensitive = classifier(tmp_path, one_topic("[{term: nato}]"))
    assert fired(insensitive, article("NATO met.")) == {"t"}


def test_regex_term_via_re2(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("""[{regex: '\\$\\d+ ?(?:million|bn)'}]"""))
    assert fired(clf, article("A $750 million package.")) == {"t"}
    assert fired(clf, article("A large package.")) == set()
    case = classifier(tmp_path, one_topic("[{regex: 'HIMARS', case: true}]"))
    assert fired(case, article("More HIMARS.")) == {"t"}
    assert fired(case, article("More himars.")) == set()


def test_a_regex_runs_only_over_the_fields_a_rule_counts_it_in(tmp_path: Path) -> None:
    from monitor.rules.matching import matcher_fields

    clf = classifier(tmp_path, one_topic(
        """[{regex: 'truce', fields: [title]}, {regex: 'pause', fields: [lede]}, {regex: 'halt'}]"""))
    leaves = {leaf.text: i for i, leaf in enumerate(clf.ruleset.leaves)}
    fields = matcher_fields(clf.ruleset)
    assert fields[leaves["truce"]] == {"title"} and fields[leaves["pause"]] == {"body"}
    assert fields[leaves["halt"]] is None
    assert fired(clf, article("A truce, a truce.", title="A truce")) == {"t"}
    assert fired(clf, article("A truce, a truce.", title="News")) == set()
    occurrences = clf._occurrences(clf.analyse(article("A truce.", title="A truce")))
    assert {o.field for o in occurrences[leaves["truce"]]} == {"title"}


def test_catastrophic_regex_runs_in_linear_time(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("""[{regex: '(\\w+\\s?)+$'}]"""))
    text = "a" * 5000 + "!"
    start = time.perf_counter()
    clf.classify(article(text))
    assert time.perf_counter() - start < 1.0


# --- groups and lists -------------------------------------------------------------------


def test_any_all_none_nesting(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic(
        "[{all: [{any: [truce, ceasefire]}, {any: [kyiv, moscow]}, {none: [gaza]}]}]"
    ))
    assert fired(clf, article("A truce near Kyiv.")) == {"t"}
    assert fired(clf, article("A ceasefire, Moscow said.")) == {"t"}
    assert fired(clf, article("A truce was agreed.")) == set()  # the second any fails
    assert fired(clf, article("A truce in Gaza, Moscow said.")) == set()  # none fails


def test_require_and_exclude(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[ceasefire]", extra="require: [ukraine]\nexclude: [gaza]"))
    assert fired(clf, article("Ukraine wants a ceasefire.")) == {"t"}
    assert fired(clf, article("Everyone wants a ceasefire.")) == set()
    exp = clf.explain(article("Ukraine and Gaza: a ceasefire."))[0]
    assert not exp.fired and any("excluded" in r and "gaza" in r for r in exp.reasons)


def test_named_lists_are_shared_across_topics(tmp_path: Path) -> None:
    clf = classifier(tmp_path, """
        lists:
          war_context: [ukraine, kyiv]
        topics:
          - id: a
            terms: [truce]
            require: ["@war_context"]
          - id: b
            terms: [talks]
            require: [{list: war_context}]
    """)
    assert fired(clf, article("A truce and talks in Kyiv.")) == {"a", "b"}
    assert fired(clf, article("A truce and talks in Paris.")) == set()
    # one leaf per distinct term, whatever the number of references
    assert sum(1 for leaf in clf.ruleset.leaves if leaf.text == "kyiv") == 1


def test_except_near_drops_mentions_of_other_stories(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic(
        "[{any: [ceasefire], except_near: [gaza], within: sentence}]"
    ))
    assert fired(clf, article("The ceasefire in Gaza holds. Nothing else.")) == set()
    # the same article with a second, unrelated-sentence ceasefire still fires
    assert fired(clf, article("The ceasefire in Gaza holds. Kyiv wants a ceasefire.")) == {"t"}


# --- proximity ------------------------------------------------------------------------


def test_near_within_n_words(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{near: [freeze, front line], within: 4}]"))
    assert fired(clf, article("A freeze along the front line.")) == {"t"}  # 3 words apart
    assert fired(clf, article("The front line, a freeze.")) == {"t"}  # either order
    assert fired(clf, article("A freeze of prices, then talk of the front line.")) == set()


def test_near_same_sentence(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{near: [aid, ukraine], within: sentence}]"))
    assert fired(clf, article("Aid for the country was approved by Ukraine's allies.")) == {"t"}
    assert fired(clf, article("Aid was approved. Ukraine thanked them.")) == set()


def test_lines_are_sentence_boundaries(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{near: [aid, ukraine], within: sentence}]"))
    assert fired(clf, article("Aid approved\nUkraine reacts")) == set()


# --- fields, scoring, counting ------------------------------------------------------------


PASSING = "Filler sentence about something else. " * 6


def test_field_weights_and_lede(tmp_path: Path) -> None:
    text = """
        topics:
          - id: t
            threshold: 3
            lede_sentences: 1
            fields: {title: 3, summary: 2, lede: 2, body: 1}
            terms: [ceasefire]
    """
    clf = classifier(tmp_path, text)
    assert fired(clf, article(PASSING, title="Ceasefire agreed")) == {"t"}  # 3
    assert fired(clf, article("A ceasefire. " + PASSING)) == set()  # lede: 2
    assert fired(clf, article("A ceasefire. " + PASSING + "The ceasefire.")) == {"t"}  # 2 + 1
    assert fired(clf, article(PASSING + "A ceasefire. A ceasefire.")) == set()  # body 1 + 1
    exp = clf.explain(article("A ceasefire. " + PASSING, summary="Ceasefire news"))[0]
    assert {(h.field, h.weight) for h in exp.hits} == {("summary", 2.0), ("lede", 2.0)}
    assert exp.fired


def test_field_restriction_on_a_term(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{term: truce, fields: [title]}]"))
    assert fired(clf, article("", title="Truce")) == {"t"}
    assert fired(clf, article("Truce.")) == set()


def test_weights_and_threshold(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic(
        "[{term: peace talks, weight: 2}, {any: [talks], weight: 0.5}]", threshold=2.5
    ))
    exp = clf.explain(article("Peace talks. More talks."))[0]
    # "talks" inside "peace talks" scores once, as the longer term
    assert exp.score == 2.5 and exp.fired
    assert clf.explain(article("Peace talks."))[0].score == 2.0
    assert not clf.explain(article("Peace talks."))[0].fired


def test_min_terms_needs_distinct_terms(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[truce, ceasefire]", extra="min_terms: 2"))
    assert fired(clf, article("Truce. Truce. Truce.")) == set()
    assert fired(clf, article("Truce. Ceasefire.")) == {"t"}


def test_min_count_and_max_count(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{term: truce, min_count: 2}]"))
    assert fired(clf, article("A truce.")) == set()
    assert fired(clf, article("A truce. Another truce.")) == {"t"}
    capped = classifier(tmp_path, one_topic("[truce]", threshold=3, extra="max_count: 2"))
    assert capped.explain(article("Truce. Truce. Truce. Truce."))[0].score == 2


def test_passing_mention_in_long_article_does_not_fire(tmp_path: Path) -> None:
    text = """
        topics:
          - id: t
            threshold: 2
            long_articles: {free_words: 100, per_1000_words: 2}
            terms: [ceasefire]
    """
    clf = classifier(tmp_path, text)
    short = "Filler. The ceasefire held. Later the ceasefire broke."
    assert fired(clf, article(short)) == {"t"}
    long = short + " " + "Some words about the economy and the weather. " * 120
    exp = clf.explain(article(long))[0]
    assert not exp.fired and exp.threshold > 2 and "long body" in exp.reasons[0]


def test_group_min_sentences(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[{any: [truce, ceasefire], min_sentences: 2}]"))
    assert fired(clf, article("A truce and a ceasefire.")) == set()
    assert fired(clf, article("A truce. A ceasefire.")) == {"t"}


def test_repeated_sentences_count_once(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[howitzer]", threshold=2))
    caption = "In this photo a howitzer fires toward the positions near the town."
    assert fired(clf, article(f"{caption}\n{caption}\n{caption}")) == set()
    assert fired(clf, article("A howitzer fired. Another howitzer arrived.")) == {"t"}


# --- entities -------------------------------------------------------------------------


def test_gazetteer_entities_without_a_trained_pipeline(tmp_path: Path) -> None:
    clf = classifier(tmp_path, """
        gazetteer:
          person: [Volodymyr Zelensky, Vladimir Putin]
          place: [Kyiv]
        topics:
          - id: t
            terms: [{near: [{entity: person}, talks], within: sentence}]
          - id: p
            terms: [{entity: place, text: [kyiv]}]
    """)
    assert not clf.analyser.has_entities  # blank pipeline: entities come from the gazetteer
    assert fired(clf, article("Vladimir Putin rejected talks.")) == {"t"}
    assert fired(clf, article("volodymyr zelensky wants talks in Kyiv.")) == {"t", "p"}
    assert fired(clf, article("The minister rejected talks.")) == set()
    hits = clf.explain(article("Vladimir Putin rejected talks."), topic="t")[0].hits
    assert [h.text for h in hits] == ["Vladimir Putin"]


def test_trained_pipeline_entities_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("en_core_web_sm", reason="en_core_web_sm is not installed here")
    from monitor.analysis.analyser import Analyser
    from monitor.rules.classifier import Classifier
    from monitor.rules.ruleset import load_rules
    from tests.helpers.rules import write_rules

    rules = load_rules([write_rules(tmp_path, one_topic("[{entity: person}]"))])
    clf = Classifier(rules, Analyser("en_core_web_sm"))
    assert clf.analyser.has_entities
    assert "NER" in clf.analyser.describe()
    assert fired(clf, article("Angela Merkel visited Paris on Monday.")) == {"t"}


def test_missing_trained_pipeline_falls_back_to_blank() -> None:
    from monitor.analysis.analyser import Analyser

    analyser = Analyser("no_such_pipeline_xyz")
    assert analyser.describe() == "blank en + lookup lemmatizer"
    assert not analyser.has_entities


# --- scope, severity, channels ------------------------------------------------------------


def test_scope_tags_language_and_age(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic(
        "[truce]", extra="scope: {feed_tags: [ukraine], languages: [en], max_age: 2d}"
    ))
    now = datetime(2025, 1, 10, tzinfo=UTC)
    ok = dict(tags=("Ukraine",), language="en-GB", published=now - timedelta(days=1))
    assert {m.topic for m in clf.classify(article("Truce.", **ok), now=now)} == {"t"}  # type: ignore[arg-type]
    for change in ({"tags": ("sport",)}, {"language": "de"},
                   {"published": now - timedelta(days=3)}):
        art = article("Truce.", **{**ok, **change})  # type: ignore[arg-type]
        assert clf.classify(art, now=now) == [], change
        reason = clf.explain(art, now=now)[0].reasons[0]
        assert "not in scope" in reason or "older than" in reason
    # unknown language and date do not silence the topic
    assert clf.classify(article("Truce.", tags=("ukraine",)), now=now) != []
    # nor does a feed's zero timestamp (1970): a new item must not be dropped for it
    epoch = {**ok, "published": datetime(1970, 1, 1, tzinfo=UTC)}
    assert clf.classify(article("Truce.", **epoch), now=now) != []  # type: ignore[arg-type]


def test_severity_and_channels_are_carried(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[truce]", extra="severity: critical\nchannels: [ops, mail]"))
    (match,) = clf.classify(article("Truce."))
    assert match.severity == "critical" and match.channels == ("ops", "mail")
    assert clf.topics[0].severity == "critical" and clf.topics[0].name == "t"


# --- evidence --------------------------------------------------------------------------


def test_evidence_names_terms_fields_sentences_and_marks_text(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("[ceasefire, truce]"))
    body = ("Fighting continued. Officials discussed a ceasefire and a truce. "
            "Weather was mild. The ceasefire broke. Markets rose. A truce again. The end.")
    (match,) = clf.classify(article(body, title="Truce talk"))
    assert match.score >= match.threshold
    assert ("truce", "title", 0) in {(h.term, h.field, h.sentence) for h in match.hits}
    assert ("ceasefire", "lede", 1) in {(h.term, h.field, h.sentence) for h in match.hits}
    assert ("ceasefire", "body", 3) in {(h.term, h.field, h.sentence) for h in match.hits}
    assert 1 <= len(match.evidence) <= 3
    best = next(e for e in match.evidence if "discussed" in e.text)
    assert best.marked == "Officials discussed a **ceasefire** and a **truce**."
    assert set(best.terms) == {"ceasefire", "truce"}
    assert match.terms == ("truce", "ceasefire")


def test_explain_covers_non_firing_topics(tmp_path: Path) -> None:
    clf = classifier(tmp_path, """
        topics:
          - {id: a, threshold: 2, lede_sentences: 0, terms: [truce]}
          - {id: b, terms: [aid]}
    """)
    exps = {e.topic: e for e in clf.explain(article("A truce."))}
    assert set(exps) == {"a", "b"}
    assert not exps["a"].fired and exps["a"].score == 1 and exps["a"].threshold == 2
    assert "score 1 < threshold 2" in exps["a"].reasons[0]
    assert "truce" in exps["a"].format()
    assert exps["b"].score == 0 and not exps["b"].hits


# --- examples -------------------------------------------------------------------------------


def test_check_examples_reports_failures_with_file_and_line(tmp_path: Path) -> None:
    clf = classifier(tmp_path, """
        topics:
          - id: t
            threshold: 2
            lede_sentences: 0
            terms: [truce]
            should_match:
              - A truce. Another truce.
              - A truce.
            should_not_match:
              - Nothing here.
              - {title: Truce, text: The truce held.}
    """)
    problems = clf.check_examples()
    assert len(problems) == 2
    assert "rules.yaml:9: topic t: should_match example 2 should match but scored 1 < 2" in (
        problems[0]
    )
    assert "rules.yaml:12:" in problems[1] and "should not match" in problems[1]


def test_classifier_pickles_by_rebuilding(tmp_path: Path) -> None:
    import pickle

    clf = classifier(tmp_path, one_topic("[truce]"))
    clone = pickle.loads(pickle.dumps(clf))
    assert fired(clone, article("A truce.")) == {"t"}


def test_wildcard_on_a_hyphenated_word(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic("['cease-fire*']"))
    assert fired(clf, article("They agreed a cease-fire.")) == {"t"}
    assert fired(clf, article("Both cease-fires failed.")) == {"t"}
    assert fired(clf, article("Cease fire!")) == set()
