"""Loading rule files: the schema, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.rules.ruleset import load_rules
from monitor.yamlfile import ConfigErrors
from tests.helpers.rules import write_rules


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = write_rules(tmp_path, text)
    with pytest.raises(ConfigErrors) as info:
        load_rules([path])
    return [str(e) for e in info.value.errors]


def test_loads_topics_lists_and_defaults(tmp_path: Path) -> None:
    path = write_rules(tmp_path, """
        lists:
          ctx: [ukraine, kyiv]
        topics:
          - id: talks
            name: Peace talks
            severity: high
            channels: [ops]
            threshold: 3
            terms: ["negotiat*", {term: peace talks, weight: 2}, "@ctx"]
    """)
    rs = load_rules([path])
    (t,) = rs.topics
    assert (t.id, t.name, t.severity, t.channels, t.threshold) == (
        "talks", "Peace talks", "high", ("ops",), 3.0
    )
    assert t.field_weights == {"title": 3.0, "summary": 2.0, "lede": 2.0, "body": 1.0}
    assert {leaf.text for leaf in rs.leaves} == {"negotiat*", "peace talks", "ukraine", "kyiv"}


def test_folder_loads_every_yaml_file(tmp_path: Path) -> None:
    write_rules(tmp_path, "topics: [{id: a, terms: [x]}]", "a.yaml")
    write_rules(tmp_path, "topics: [{id: b, terms: [y]}]", "b.yml")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [t.id for t in load_rules([tmp_path]).topics] == ["a", "b"]


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, """
        topics:
          - id: a
            treshold: 2
            terms: [x]
    """)
    assert "rules.yaml:4:" in err and "topics.0.treshold" in err and "unknown key" in err


def test_unknown_key_inside_a_condition(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, """
        topics:
          - id: a
            terms:
              - x
              - {term: y, wieght: 2}
    """)
    assert "rules.yaml:6:" in err and "topics.0.terms.1.wieght" in err


def test_strict_types(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, """
        topics:
          - id: a
            terms: [{term: US, case: yes}]
          - id: b
            terms: [x]
            severity: urgent
    """)
    assert any("terms.0.case" in e and "boolean" in e for e in errs)
    assert any("severity" in e for e in errs)


def test_bad_regex_is_rejected_with_line(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, """
        topics:
          - id: a
            terms:
              - {regex: '(a)\\1'}
    """)
    assert "rules.yaml:5:" in err and "re2" in err and "topics.0.terms.0.regex" in err


def test_lookaround_regex_is_rejected(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, "topics: [{id: a, terms: [{regex: '(?<=a)b'}]}]")
    assert "re2" in err


def test_unknown_named_list(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, """
        lists:
          known: [a]
        topics:
          - id: a
            terms: ["@unknown"]
    """)
    assert "rules.yaml:6:" in err and "unknown list @unknown" in err and "known" in err


def test_list_cycle_is_an_error(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, """
        lists:
          a: ["@b"]
          b: ["@a"]
        topics: [{id: t, terms: ["@a"]}]
    """)
    assert any("cycle" in e for e in errs)


def test_duplicate_topic_id_across_files(tmp_path: Path) -> None:
    write_rules(tmp_path, "topics: [{id: a, terms: [x]}]", "1.yaml")
    write_rules(tmp_path, "topics:\n  - {id: b, terms: [y]}\n  - {id: a, terms: [z]}\n", "2.yaml")
    with pytest.raises(ConfigErrors) as info:
        load_rules([tmp_path])
    (err,) = [str(e) for e in info.value.errors]
    assert "2.yaml:3:" in err and "duplicate topic id 'a'" in err and "1.yaml:1" in err


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, "topics:\n  - id: a\n    id: b\n    terms: [x]\n")
    assert "rules.yaml:3" in err and "duplicate key" in err


def test_condition_needs_exactly_one_kind(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, "topics: [{id: a, terms: [{term: x, regex: y}]}]")
    assert "exactly one of" in err


def test_bad_wildcard_and_window(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, """
        topics:
          - id: a
            terms:
              - "*"
              - {near: [a, b], within: 0}
    """)
    assert any("wildcard" in e for e in errs) and any("within" in e for e in errs)


def test_alias_bomb_is_rejected(tmp_path: Path) -> None:
    bomb = (
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "topics: [{id: t, terms: [*e]}]\n"
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(ConfigErrors) as info:
        load_rules([path])
    assert "anchors and aliases" in str(info.value) and "bomb.yaml:1" in str(info.value)


def test_nested_list_expansion_is_bounded(tmp_path: Path) -> None:
    # The rule-language version of a bomb: each list names the previous one 10 times.
    lines = ["lists:", "  l0: [a, b, c, d, e, f, g, h, i, j]"]
    for n in range(1, 7):
        ref = f'"@l{n - 1}"'
        lines.append(f"  l{n}: [{', '.join([ref] * 10)}]")
    lines.append('topics: [{id: t, terms: ["@l6"]}]')
    errs = errors_of(tmp_path, "\n".join(lines) + "\n")
    assert any("expands to more than" in e for e in errs)


def test_bad_max_age_and_missing_file(tmp_path: Path) -> None:
    (err,) = errors_of(tmp_path, "topics: [{id: a, terms: [x], scope: {max_age: soon}}]")
    assert "max_age" in err
    with pytest.raises(ConfigErrors) as info:
        load_rules([tmp_path / "nope.yaml"])
    assert "not found" in str(info.value)


def test_all_errors_are_reported_at_once(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, """
        topics:
          - {id: a, terms: ["@nope"]}
          - {id: b, terms: [{regex: '(?<=x)'}]}
          - {id: c, colour: red, terms: [x]}
    """)
    assert len(errs) == 3
