"""test-rule, classify and eval through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.cli import rules as cli_rules
from tests.helpers.configs import ConfigFactory
from tests.helpers.paths import SEED
from tests.helpers.rules import PACK, write_rules

RULES = """
topics:
  - id: truce
    threshold: 1
    terms: [truce, ceasefire]
  - id: aid
    threshold: 1
    terms: [aid]
"""


@pytest.fixture
def group() -> click.Group:
    @click.group()
    def cli() -> None:
        pass

    cli_rules.register(cli)
    return cli


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return write_rules(tmp_path, RULES)


def jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_classify_writes_topics_and_scores(tmp_path: Path, group: click.Group,
                                           rules: Path) -> None:
    src = jsonl(tmp_path / "in.jsonl", [
        {"id": "1", "title": "Truce agreed", "text": "A ceasefire."},
        {"id": 2, "title": "", "text": "Nothing."},
    ])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(group, ["classify", "--input", str(src), "--output", str(out),
                                     "--rules", str(rules)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["id"] == "1" and lines[0]["topics"] == ["truce"]
    assert lines[0]["scores"]["truce"] > 0 and lines[0]["scores"]["aid"] == 0
    assert lines[1] == {"id": 2, "topics": [], "scores": {"truce": 0, "aid": 0}}


def test_classify_bad_line_is_reported_and_others_kept(tmp_path: Path, group: click.Group,
                                                       rules: Path) -> None:
    src = jsonl(tmp_path / "in.jsonl", [
        {"id": "a", "text": "truce"}, "{not json", {"text": "no id"}, {"id": "d", "text": "aid"},
    ])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(group, ["classify", "-i", str(src), "-o", str(out),
                                     "-r", str(rules)])
    assert res.exit_code == 1
    assert f"{src}:2: invalid JSON" in res.output and f"{src}:3: missing 'id'" in res.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "d"]


def test_bad_rules_exit_2(tmp_path: Path, group: click.Group) -> None:
    bad = write_rules(tmp_path, "topics: [{id: a, terms: ['@missing']}]", "bad.yaml")
    src = jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}])
    res = CliRunner().invoke(group, ["classify", "-i", str(src), "-o", str(tmp_path / "o"),
                                     "-r", str(bad)])
    assert res.exit_code == 2 and "bad.yaml:1" in res.output and "unknown list" in res.output


def test_eval_counts_and_ids(tmp_path: Path, group: click.Group, rules: Path) -> None:
    src = jsonl(tmp_path / "lab.jsonl", [
        {"id": "tp", "text": "A truce.", "labels": {"truce": 1, "aid": 0}},
        {"id": "fp", "text": "A truce and aid.", "labels": {"truce": 0, "aid": 1}},
        {"id": "fn", "text": "Nothing.", "labels": {"truce": 1, "aid": 0}},
        {"id": "tn", "text": "Nothing.", "labels": {"truce": 0, "aid": 0}},
    ])
    res = CliRunner().invoke(group, ["eval", "-i", str(src), "-r", str(rules), "--json"])
    assert res.exit_code == 0, res.output
    data = {t["topic"]: t for t in json.loads(res.output)["topics"]}
    truce = data["truce"]
    assert (truce["tp"], truce["fp"], truce["fn"], truce["tn"]) == (1, 1, 1, 1)
    assert truce["precision"] == 0.5 and truce["recall"] == 0.5 and truce["f1"] == 0.5
    assert truce["false_positives"] == ["fp"] and truce["false_negatives"] == ["fn"]
    assert (data["aid"]["tp"], data["aid"]["tn"]) == (1, 3)


def test_eval_plain_table_and_fail_under(tmp_path: Path, group: click.Group,
                                         rules: Path) -> None:
    src = jsonl(tmp_path / "lab.jsonl", [
        {"id": "x", "text": "Nothing.", "labels": {"truce": 1, "aid": 0}},
        {"id": "y", "text": "A truce.", "labels": {"truce": 1}},
    ])
    res = CliRunner().invoke(group, ["eval", "-i", str(src), "-r", str(rules)])
    assert res.exit_code == 0
    assert "truce" in res.output and "0.500" in res.output  # recall 1 of 2
    assert "truce false negatives: x" in res.output
    res = CliRunner().invoke(group, ["eval", "-i", str(src), "-r", str(rules),
                                     "--fail-under", "0.9"])
    assert res.exit_code == 1 and "F1 under 0.9: truce" in res.output


def test_eval_missing_labels_is_a_bad_line(tmp_path: Path, group: click.Group,
                                           rules: Path) -> None:
    src = jsonl(tmp_path / "lab.jsonl", [{"id": "x", "text": "t"}])
    res = CliRunner().invoke(group, ["eval", "-i", str(src), "-r", str(rules)])
    assert res.exit_code == 1 and f"{src}:1: missing 'labels'" in res.output


def test_test_rule_text_file_and_html(tmp_path: Path, group: click.Group, rules: Path) -> None:
    res = CliRunner().invoke(group, ["test-rule", "--text", "A truce held.", "-r", str(rules)])
    assert res.exit_code == 0
    assert "truce (truce): FIRED" in res.output and "A **truce** held." in res.output
    assert "aid (aid): no match" in res.output and "why not" in res.output

    res = CliRunner().invoke(group, ["test-rule", "--text", "quiet", "--topic", "aid",
                                     "-r", str(rules)])
    assert res.exit_code == 1 and "truce" not in res.output

    txt = tmp_path / "a.txt"
    txt.write_text("Aid arrived.")
    res = CliRunner().invoke(group, ["test-rule", "--file", str(txt), "-r", str(rules)])
    assert res.exit_code == 0 and "aid (aid): FIRED" in res.output

    html = tmp_path / "a.html"
    para = "The ceasefire held overnight along the whole front, officials said today. "
    html.write_text(f"<html><head><title>News</title></head><body><article><h1>Report</h1>"
                    f"<p>{para * 4}</p><p>{para * 3}</p></article></body></html>")
    res = CliRunner().invoke(group, ["test-rule", "--file", str(html), "-r", str(rules)])
    assert res.exit_code == 0 and "**ceasefire**" in res.output


def test_test_rule_usage_errors(group: click.Group, rules: Path) -> None:
    res = CliRunner().invoke(group, ["test-rule", "-r", str(rules)])
    assert res.exit_code == 2 and "exactly one of" in res.output
    res = CliRunner().invoke(group, ["test-rule", "--text", "x", "--topic", "nope",
                                     "-r", str(rules)])
    assert res.exit_code == 2 and "unknown topic" in res.output


def test_config_rules_list_is_used(tmp_path: Path, make_config: ConfigFactory,
                                   group: click.Group) -> None:
    (tmp_path / "rules").mkdir()
    write_rules(tmp_path / "rules", RULES, "r.yaml")
    cfg = make_config.write(rules=["rules/"])  # relative to the config file
    res = CliRunner().invoke(group, ["test-rule", "--text", "aid", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "aid (aid): FIRED" in res.output


def test_missing_config_is_exit_2(tmp_path: Path, group: click.Group) -> None:
    res = CliRunner().invoke(group, ["test-rule", "--text", "x", "--config",
                                     str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "not found" in res.output


def test_main_group_runs_the_seed_pack_on_the_seed() -> None:
    from monitor.cli.app import cli

    res = CliRunner().invoke(cli, ["test-rule", "--file", str(SEED), "--rules", str(PACK)])
    assert res.exit_code == 0, res.output
    for topic in ("negotiation", "ceasefire", "aid"):
        assert f"\n{topic} (" in res.output and "FIRED" in res.output.split(f"\n{topic} (")[1][:200]
