"""The rule-evaluation library (monitor/rules/evaluation.py) that ``newsmon eval`` prints."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.analysis.extract import extract_page
from monitor.cli import cli
from monitor.cli.rules import _read_file
from monitor.rules.evaluation import (
    TopicScore,
    article_from_record,
    evaluate,
    evaluate_systems,
    labelled_articles,
    read_jsonl,
)
from tests.helpers.paths import shared_path
from tests.helpers.rules import write_rules


def _write_lines(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n",
                    encoding="utf-8")
    return path


def test_scores_count_each_labelled_article_once() -> None:
    score = TopicScore("truce")
    for article_id, gold, fired in [("a", True, True), ("b", True, False), ("c", False, True),
                                    ("d", False, False), ("e", True, True)]:
        score.add(article_id, gold=gold, fired=fired)
    assert (score.tp, score.fp, score.fn, score.tn) == (2, 1, 1, 1)
    assert score.precision == pytest.approx(2 / 3)
    assert score.recall == pytest.approx(2 / 3)
    assert score.f1 == pytest.approx(2 / 3)
    assert score.false_positives == ["c"] and score.false_negatives == ["b"]


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_scored(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "l.jsonl", [
        {"id": "1", "title": "Truce agreed", "text": "", "labels": {"truce": 1}},
        "{not json",
        {"title": "no id", "text": "", "labels": {"truce": 0}},
        {"id": "4", "title": "Weather", "text": "Sunny.", "labels": {"truce": 0}},
        {"id": "5", "title": "x", "text": "y"},
    ])
    result = evaluate(lambda a: {"truce"} if "Truce" in a.title else set(), ["truce"],
                      read_jsonl(path))
    assert [n for n, _ in result.bad_lines] == [2, 3, 5]
    assert "missing 'labels'" in result.bad_lines[-1][1]
    assert result.scores["truce"].tp == 1 and result.scores["truce"].tn == 1


def test_a_topic_without_labels_is_no_labels_and_never_under_the_floor(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "l.jsonl", [
        {"id": "1", "title": "Truce agreed", "text": "", "labels": {"truce": 1}},
    ])
    result = evaluate(lambda a: {"truce"}, ["truce", "aid"], read_jsonl(path))
    assert result.scores["aid"].labelled == 0
    assert result.under(0.9) == []
    assert result.as_dict()["topics"][1]["labelled"] == 0


def test_eval_command_says_no_labels_and_passes_fail_under(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, """
        topics:
          - id: truce
            threshold: 1
            terms: [truce]
          - id: aid
            threshold: 1
            terms: [aid]
    """)
    data = _write_lines(tmp_path / "l.jsonl", [
        {"id": "1", "title": "A truce", "text": "", "labels": {"truce": 1}},
        {"id": "2", "title": "Rain", "text": "", "labels": {"truce": 0}},
    ])
    result = CliRunner().invoke(cli, ["eval", "-i", str(data), "-r", str(rules),
                                      "--fail-under", "0.9"])
    assert result.exit_code == 0, result.output
    assert "aid" in result.output and "no labels" in result.output


def test_records_carry_language_from_lang_too() -> None:
    assert article_from_record({"id": 1, "title": "t", "text": "x", "lang": "uk"}).language == "uk"
    with pytest.raises(ValueError, match="strings"):
        article_from_record({"id": 1, "title": 3, "text": "x"})


def test_test_rule_file_judges_the_text_the_daemon_extracts(tmp_path: Path) -> None:
    """test-rule --file used trafilatura's defaults while the daemon uses its own options."""
    html_dir = shared_path("fixtures", "html", "html")
    pages = sorted(html_dir.glob("*.html.gz"))
    # A page where trafilatura's defaults and the daemon's options give different text.
    data = gzip.decompress(pages[175 if len(pages) > 175 else -1].read_bytes())
    local = tmp_path / "page.html"
    local.write_bytes(data)
    expected = extract_page(data)
    assert expected is not None
    title, text = _read_file(local)
    assert text == expected.text
    assert title == (expected.title or "")


def test_evaluate_systems_scores_each_system_in_one_pass(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "l.jsonl", [
        {"id": "1", "title": "Truce agreed", "text": "", "labels": {"truce": 1}},
        {"id": "2", "title": "Truce rumour", "text": "", "labels": {"truce": 0}},
        "{bad",
    ])
    calls = []

    def judge(a: object) -> dict[str, set[str]]:
        calls.append(a)
        rules = {"truce"} if "Truce" in a.title else set()  # type: ignore[attr-defined]
        return {"rules": rules, "both": rules if "agreed" in a.title else set()}  # type: ignore[attr-defined]

    result = evaluate_systems(judge, ["truce"], read_jsonl(path))
    assert len(calls) == 2 and set(result) == {"rules", "both"}
    assert (result["rules"].scores["truce"].tp, result["rules"].scores["truce"].fp) == (1, 1)
    assert (result["both"].scores["truce"].tp, result["both"].scores["truce"].fp) == (1, 0)
    assert [n for n, _ in result["rules"].bad_lines] == [3]


def test_labelled_articles_keep_ids_labels_and_report_the_rest(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "l.jsonl", [
        {"id": 7, "title": "t", "text": "x", "labels": {"aid": 1, "truce": 0}},
        {"id": "8", "title": "t", "text": "x"},
        {"id": "9", "title": 3, "text": "x", "labels": {}},
    ])
    bad: list[tuple[int, str]] = []
    items = labelled_articles(read_jsonl(path), bad)
    assert [(i.id, i.labels) for i in items] == [("7", {"aid": True, "truce": False})]
    assert [n for n, _ in bad] == [2, 3]


def test_eval_cv_prints_rules_model_and_both_on_real_articles(tmp_path: Path) -> None:
    lines = shared_path("eval", "train.jsonl").read_text(encoding="utf-8").splitlines()[:80]
    data = tmp_path / "l.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pack = Path(__file__).resolve().parents[1] / "config" / "rules" / "ukraine-war.yaml"
    res = CliRunner().invoke(cli, ["eval", "-i", str(data), "-r", str(pack), "--no-model",
                                   "--cv", "2", "--json"])
    assert res.exit_code in (0, 1), res.output
    out = json.loads(res.output)
    assert set(out["cross_validated"]) == {"rules", "model", "both"}
    assert [t["topic"] for t in out["cross_validated"]["rules"]] == ["negotiation", "ceasefire", "aid"]
    # rules alone need no fitting: the cross-validated figures are the plain ones
    def counts(topics: list[dict]) -> list[tuple]:
        return [(t["topic"], t["tp"], t["fp"], t["fn"], t["tn"]) for t in topics]

    assert counts(out["cross_validated"]["rules"]) == counts(out["topics"])
