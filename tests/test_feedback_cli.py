"""Analyst feedback end to end: real articles from ../shared/eval/dev.jsonl stored through
the pipeline's item write, judged with ``newsmon feedback``, exported with ``newsmon
labels export`` and scored with ``newsmon eval`` on the export (issue 11, part 3)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from monitor.analysis.analyser import Analyser
from monitor.cli import cli
from monitor.config import load_config
from monitor.ingest.parse import canonical_url, content_hash
from monitor.models import FeedItem, ProcessedArticle
from monitor.rules.classifier import Classifier
from monitor.rules.evaluation import article_from_record
from monitor.rules.ruleset import load_rules
from monitor.storage import Storage, open_storage
from monitor.storage import read_models as views
from monitor.storage.feedback import FeedbackRepository
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import record
from tests.helpers.paths import shared_path

FEED = "https://feeds.test/shared-eval.xml"
TOPICS = ("aid", "ceasefire", "negotiation")
# Chosen for what the seed pack (rules alone) did on them when this was written:
# a004 nothing, right; a012 ceasefire + negotiation, right; a048 ceasefire, wrong;
# a053 aid + ceasefire, missing negotiation; a075 aid right, negotiation wrong. The
# expected figures are worked out from what the pack fires now (it is being retuned).
ARTICLES = ("a004", "a012", "a048", "a053", "a075")


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


class Workspace:
    """A config, and a database holding the chosen dev.jsonl articles as the pipeline stores them."""

    def __init__(self, tmp_path: Path) -> None:
        self.config_path = ConfigFactory(tmp_path).write(name="c.yaml", database="t.db")
        self.config = load_config(self.config_path)
        self.records = {r["id"]: r for r in map(json.loads, shared_path("eval", "dev.jsonl").open())
                        if r["id"] in ARTICLES}
        classifier = Classifier(load_rules(self.config.rule_files()),
                                Analyser(self.config.analysis.spacy_model), learned=None)
        self.fired: dict[str, set[str]] = {}
        self.article_ids: dict[str, int] = {}
        self.alert_ids: dict[tuple[str, str], int] = {}
        self.alert_keys: dict[tuple[str, str], str] = {}
        storage = open_storage(self.config.database_path())
        try:
            storage.feeds.sync([(FEED, "Shared eval set", [])])
            feed_id = storage.feeds.get(FEED).id
            for rec_id in ARTICLES:
                self._store(storage, feed_id, classifier, self.records[rec_id])
        finally:
            storage.close()

    def _store(self, storage: Storage, feed_id: int, classifier: Classifier, rec: dict[str, Any]) -> None:
        url = f"https://news.test/{rec['id']}"
        article = article_from_record({**rec, "url": url})
        matches = tuple(classifier.classify(article))
        self.fired[rec["id"]] = {m.topic for m in matches}
        item = FeedItem(guid=url, link=url, canonical_url=canonical_url(url), title=article.title,
                        summary="", published=article.published,
                        content_hash=content_hash(article.title, ""))
        result = record(storage, feed_id, rec["source"],
                        ProcessedArticle(item=item, article=article, matches=matches),
                        lambda _match: ["hook"])
        self.article_ids[rec["id"]] = result.article_id
        rows = storage.db.execute("SELECT id, topic, alert_key FROM alerts WHERE article_id = ?",
                                  (result.article_id,)).fetchall()
        for alert_id, topic, key in rows:
            self.alert_ids[(rec["id"], topic)] = alert_id
            self.alert_keys[(rec["id"], topic)] = key

    def gold(self, rec_id: str, topic: str) -> bool:
        return bool(self.records[rec_id]["labels"][topic])

    def judge_alerts(self, topics: set[str] | None = None) -> None:
        """Judge every alert (of ``topics``) as the dev.jsonl annotator would have."""
        for (rec_id, topic), alert_id in sorted(self.alert_ids.items()):
            if topics is not None and topic not in topics:
                continue
            verdict = "relevant" if self.gold(rec_id, topic) else "irrelevant"
            # One by its key, the rest by id: both are what `newsmon alerts` lists.
            ref = self.alert_keys[(rec_id, topic)] if rec_id == "a048" else str(alert_id)
            result = invoke(self.config_path, "feedback", ref, verdict)
            assert result.exit_code == 0, result.output
            assert result.output.startswith(
                f"recorded: article:{self.article_ids[rec_id]} {verdict} for topic {topic}")

    def export(self, tmp_path: Path) -> list[dict[str, Any]]:
        out = tmp_path / "mine.jsonl"
        result = invoke(self.config_path, "labels", "export", "-o", str(out))
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def by_topic(result: Result) -> dict[str, dict[str, Any]]:
    return {t["topic"]: t for t in json.loads(result.stdout)["topics"]}


def test_feedback_export_and_eval_on_real_articles(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    ws.judge_alerts()
    # The negotiation the pack missed on a053, and a004 as a whole: no topic applies.
    result = invoke(ws.config_path, "feedback", f"article:{ws.article_ids['a053']}", "relevant",
                    "--topic", "negotiation", "--note", "peace-talks offer in the body", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["topic"] == "negotiation"
    result = invoke(ws.config_path, "feedback", f"article:{ws.article_ids['a004']}", "irrelevant")
    assert result.exit_code == 0 and "for the whole article" in result.output, result.output

    lines = ws.export(tmp_path)
    names = {v: k for k, v in ws.article_ids.items()}
    labels = {names[int(line["id"].removeprefix("article:"))]: line["labels"] for line in lines}
    # Each alert labels its topic; the two article verdicts add theirs; nothing else is labelled.
    expected = {rec_id: {t: int(ws.gold(rec_id, t)) for t in sorted(fired)}
                for rec_id, fired in ws.fired.items()}
    expected["a053"]["negotiation"] = 1
    expected["a004"] = dict.fromkeys(TOPICS, 0)
    assert labels == {k: v for k, v in expected.items() if v}
    for rec_id, got in labels.items():  # the analyst agreed with the annotator
        assert all(v == ws.records[rec_id]["labels"][t] for t, v in got.items())
    a053 = next(line for line in lines if line["id"] == f"article:{ws.article_ids['a053']}")
    rec = ws.records["a053"]
    assert (a053["title"], a053["text"], a053["source"]) == (rec["title"], rec["text"], "Shared eval set")
    assert a053["url"] == "https://news.test/a053" and a053["date"].startswith(rec["date"])

    result = invoke(ws.config_path, "eval", "-i", str(tmp_path / "mine.jsonl"), "--no-model", "--json")
    assert result.exit_code == 0, result.output
    scores = by_topic(result)
    for topic in TOPICS:
        judged = [(rec_id, bool(got[topic])) for rec_id, got in labels.items() if topic in got]
        confusion = [(gold, topic in ws.fired[rec_id]) for rec_id, gold in judged]
        want = (confusion.count((True, True)), confusion.count((False, True)),
                confusion.count((True, False)), confusion.count((False, False)))
        score = scores[topic]
        assert (score["tp"], score["fp"], score["fn"], score["tn"]) == want, topic
        tp, fp, fn, _tn = want
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        assert score["f1"] == round(f1, 4), topic
        assert score["false_positives"] == [f"article:{ws.article_ids[r]}" for r, gold in judged
                                            if not gold and topic in ws.fired[r]]
        assert score["false_negatives"] == [f"article:{ws.article_ids[r]}" for r, gold in judged
                                            if gold and topic not in ws.fired[r]]
    if ws.fired["a053"] == {"aid", "ceasefire"} and ws.fired["a048"] == {"ceasefire"}:
        # The pack as written: a ceasefire false alarm, a missed negotiation.
        assert (scores["ceasefire"]["f1"], scores["negotiation"]["f1"]) == (0.8, 0.5)
    worst = min(scores.values(), key=lambda score: score["f1"])
    if worst["f1"] < 0.99:  # the gate fails on the weakest topic
        gate = f"{worst['f1'] + 0.01:.2f}"
        result = invoke(ws.config_path, "eval", "-i", str(tmp_path / "mine.jsonl"), "--no-model",
                        "--fail-under", gate)
        assert result.exit_code == 1 and worst["topic"] in result.stderr, result.output

    result = invoke(ws.config_path, "labels")
    assert result.exit_code == 0, result.output
    assert f"{len(labels)} judged articles" in result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[1:4]}
    assert rows == {t: [str(sum(got.get(t) == 1 for got in labels.values())),
                        str(sum(got.get(t) == 0 for got in labels.values()))] for t in TOPICS}


def test_the_newest_verdict_counts(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    alert = str(ws.alert_ids[("a048", "ceasefire")])
    for verdict in ("relevant", "irrelevant"):
        assert invoke(ws.config_path, "feedback", alert, verdict).exit_code == 0
    assert [line["labels"] for line in ws.export(tmp_path)] == [{"ceasefire": 0}]


def test_a_topic_without_labels_never_fails_the_gate(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    ws.judge_alerts({"ceasefire"})
    lines = ws.export(tmp_path)
    assert lines and all(set(line["labels"]) == {"ceasefire"} for line in lines)
    result = invoke(ws.config_path, "eval", "-i", str(tmp_path / "mine.jsonl"), "--no-model", "--json")
    scores = by_topic(result)
    assert scores["aid"]["labelled"] == 0 and scores["negotiation"]["labelled"] == 0
    assert scores["ceasefire"]["labelled"] == sum("ceasefire" in fired for fired in ws.fired.values())
    assert scores["ceasefire"]["f1"] > 0.5  # 0.8 as written: one false alarm (a048)
    # A gate ceasefire passes: the two topics nobody labelled (F1 0) do not fail it.
    gate = f"{math.floor(scores['ceasefire']['f1'] * 100) / 100:.2f}"
    result = invoke(ws.config_path, "eval", "-i", str(tmp_path / "mine.jsonl"), "--no-model",
                    "--fail-under", gate)
    assert result.exit_code == 0, result.output
    assert "negotiation      no labels" in result.stdout and "aid              no labels" in result.stdout


@pytest.mark.parametrize("ref", ["999", "article:999", "article:x", "no-such-key"])
def test_an_unknown_alert_or_article_is_one_error_line(workspace: Workspace, ref: str) -> None:
    result = invoke(workspace.config_path, "feedback", ref, "relevant")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: no alert or article {ref!r} (an alert id or key from 'newsmon alerts', or article:ID)"]
    store = open_storage(workspace.config.database_path())
    try:
        assert FeedbackRepository(store.connection).latest() == []
    finally:
        store.close()


def test_a_topic_must_be_the_packs_and_the_alerts(workspace: Workspace) -> None:
    ws = workspace
    article = f"article:{ws.article_ids['a004']}"
    result = invoke(ws.config_path, "feedback", article, "relevant", "--topic", "weather")
    assert result.exit_code == 2 and result.stderr.startswith("error: unknown topic 'weather'")
    alert = str(ws.alert_ids[("a048", "ceasefire")])
    result = invoke(ws.config_path, "feedback", alert, "relevant", "--topic", "aid")
    assert result.exit_code == 2 and "is about ceasefire, not aid" in result.stderr


def test_web_and_cli_feedback_share_one_history(workspace: Workspace) -> None:
    """A verdict from the command line shows in the web workspace's article page data."""
    ws = workspace
    article_id = ws.article_ids["a012"]
    assert invoke(ws.config_path, "feedback", f"article:{article_id}", "irrelevant",
                  "--note", "a round-up").exit_code == 0
    store = open_storage(ws.config.database_path())
    try:
        rows = FeedbackRepository(store.connection).for_article(article_id)
        assert views.article_detail(store.connection, article_id) is not None
    finally:
        store.close()
    assert [(r.verdict, r.topic, r.note, r.source) for r in rows] == [
        ("not_relevant", None, "a round-up", "cli")]
