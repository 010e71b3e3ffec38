"""Explanations an analyst reads at a glance: why a topic fired, what was missing, each
sentence quoted once; and the scoring fixes found while tuning (a term lost to a
sibling proximity)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from monitor.cli import cli
from tests.helpers.paths import REPO
from tests.helpers.rules import article, classifier, one_topic

CEASEFIRE = """
topics:
  - id: c
    threshold: 2
    fields: {title: 3, summary: 2, lede: 2, body: 1}
    terms: [ceasefire, truce]
"""


# Talks that count only where the war is named three times, or in the headline.
TALKS_IN_THE_WAR = """
lists:
  war_context: [kremlin, kyiv, ukraine, moscow]
topics:
  - id: n
    threshold: 2
    terms: [talks, negotiations]
    require:
      - any: [{list: war_context, min_count: 3}, {list: war_context, fields: [title]}]
"""


def test_a_headline_repeated_as_the_first_body_line_counts_and_shows_once(tmp_path: Path) -> None:
    clf = classifier(tmp_path, CEASEFIRE)
    title = "Russia and Ukraine agree a ceasefire in the east"
    body = "Shelling went on overnight.\nThe truce starts on Monday."
    plain = clf.explain(article(body, title=title))[0]
    copied = clf.explain(article(f"{title}\n{body}", title=title))[0]
    assert copied.score == plain.score  # the copy adds nothing
    assert [(h.term, h.field) for h in copied.hits] == [(h.term, h.field) for h in plain.hits]
    quoted = [e.text for e in copied.evidence]
    assert len(quoted) == len(set(quoted)) and sum(title in q for q in quoted) == 1
    # The lede is the first sentences after the copy, not the copy itself.
    assert {h.field for h in copied.hits} == {"title", "lede"}
    assert "in the headline" in copied.why and copied.why.count("headline") == 1


def test_why_says_where_and_which_terms_carried_it(tmp_path: Path) -> None:
    clf = classifier(tmp_path, CEASEFIRE + "    long_articles: {free_words: 50, per_1000_words: 10}\n")
    body = ("Talks went on. " * 30 + "A truce was proposed. The truce would hold. "
            "Both sides discussed the truce again.")
    exp = clf.explain(article(body, title="Ceasefire talks resume"))[0]
    assert exp.fired
    assert exp.why.startswith("in the headline; 3 body sentences")
    assert re.search(r"carried by (truce, ceasefire|ceasefire, truce);", exp.why)
    assert re.search(r"threshold [\d.]+ raised from 2 for a long article", exp.why)
    text = exp.format()
    assert "  why: in the headline" in text


def test_a_regex_term_shows_what_it_matched_never_the_pattern(tmp_path: Path) -> None:
    clf = classifier(tmp_path, one_topic(r"[{regex: '\$\d+ ?(?:m|bn)\b'}, aid]"))
    exp = clf.explain(article("Aid of $750 m was pledged."))[0]
    assert exp.fired
    assert {h.term for h in exp.hits} == {'"$750 m"', "aid"}
    assert "\\d" not in exp.format() and "\\d" not in exp.why


def test_what_was_missing_is_named_with_the_shortfall(tmp_path: Path) -> None:
    clf = classifier(tmp_path, TALKS_IN_THE_WAR)
    exp = clf.explain(article("Officials met on Monday. Nothing was agreed. The Kremlin "
                              "rejected talks."))[0]
    assert not exp.fired
    (score, require) = exp.reasons
    assert score.startswith("score 1 < threshold 2") and score.endswith("1 more point needed")
    assert ("3 war-context terms (or 1 in the headline) needed, found 1 (none in the "
            "headline): kremlin") in require
    assert "why not: require #1 not met: 3 war-context terms" in exp.format()


def test_a_shortfall_counts_each_alternative_where_it_looks(tmp_path: Path) -> None:
    """Terms found in the body do not count as found "in the headline or lede": the
    message said "1 needed, found 3" for a require that was not met."""
    clf = classifier(tmp_path, """
        lists:
          aid_terms: [aid package, weapons]
        topics:
          - id: a
            threshold: 1
            terms: ["@aid_terms"]
            require:
              - any:
                  - {any: ["@aid_terms"], fields: [title, lede]}
                  - {any: ["@aid_terms"], min_sentences: 2}
    """)
    exp = clf.explain(article("Rain fell. Roads shut. Schools closed. The aid package "
                              "includes weapons.", title="Weather"))[0]
    assert not exp.fired
    (require,) = exp.reasons
    assert ("1 aid-terms term in the headline/lede (or in 2 sentences) needed, found none "
            "in the headline/lede (1 sentence): aid package, weapons") in require


def test_the_readme_test_rule_example_fires() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(x for x in readme.splitlines() if x.startswith("newsmon test-rule"))
    args = shlex.split(line.split("#")[0])[1:]
    res = CliRunner().invoke(cli, [*args, "--rules", str(REPO / "config" / "rules")])
    assert res.exit_code == 0, res.output
    assert "FIRED" in res.output and "why: in the headline" in res.output


def test_a_term_is_not_lost_to_a_sibling_proximity_on_the_same_words(tmp_path: Path) -> None:
    """The same span reached the anchor list twice: as the term and as a nested
    proximity's partner (weight 0); the partner copy overwrote the scoring one."""
    clf = classifier(tmp_path, """
        topics:
          - id: b
            threshold: 1
            terms: [{near: [[talks, {near: [truce, talks], within: 4}], truce], within: sentence}]
    """)
    exp = clf.explain(article("A truce and talks."))[0]
    assert exp.score > 0 and exp.fired
    assert [h.term for h in exp.hits] == ["talks"]


def test_shortfall_conditions_are_made_once_per_rule_set(tmp_path: Path) -> None:
    """The relaxed copies a shortfall counts with are memoised by node identity, so they
    must be made once and kept: a fresh copy per article would grow the memo and could
    reuse a dead copy's id."""
    clf = classifier(tmp_path, TALKS_IN_THE_WAR)
    first = clf.explain(article("The Kremlin rejected talks."))[0]
    made = len(clf._memo._loose)
    for n in range(30):
        again = clf.explain(article(f"The Kremlin rejected talks on day {n}."))[0]
        assert again.reasons == first.reasons
    assert made and len(clf._memo._loose) == made
