"""The learned second stage: features, fitting, the model file, and the classifier using it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from monitor.analysis.analyser import Analyser
from monitor.cli import cli
from monitor.rules.classifier import Classifier
from monitor.rules.evaluation import (
    cross_validate,
    evaluate_systems,
    labelled_articles,
    read_jsonl,
    training_rows,
)
from monitor.rules.features import FEATURES, feature_names
from monitor.rules.learned import (
    FORMAT,
    LearnedModel,
    fit_logistic,
    model_path_for,
    train_model,
)
from monitor.rules.ruleset import load_rules
from tests.helpers.paths import REPO, shared_path

PACK_FILE = REPO / "config" / "rules" / "ukraine-war.yaml"
SUBSET = 150  # articles of train.jsonl the slow tests use (analysis is the cost)


def _subset(tmp_path: Path, n: int = SUBSET) -> Path:
    lines = shared_path("eval", "train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / "labelled.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def rules_alone() -> Classifier:
    return Classifier(load_rules([PACK_FILE]), Analyser(), learned=None)


@pytest.fixture(scope="module")
def rows(rules_alone: Classifier, tmp_path_factory: pytest.TempPathFactory) -> list:
    path = _subset(tmp_path_factory.mktemp("rows"))
    return training_rows(rules_alone, labelled_articles(read_jsonl(path)))


def test_features_on_real_articles_are_finite_and_say_where(rows: list) -> None:
    topics = ["negotiation", "ceasefire", "aid"]
    for row in rows:
        for topic in topics:
            sig = row.signals[topic]
            assert set(sig) == set(feature_names([t for t in topics if t != topic]))
            assert all(np.isfinite(v) for v in sig.values())
            assert sig["rules_fired"] == float(row.rules_fired[topic])
            assert 0.0 <= sig["body_share"] <= 1.0 and 0.0 <= sig["first_position"] <= 1.0
    # On topic articles the rules see more: more body sentences, higher score ratio.
    neg = [r.signals["negotiation"] for r in rows if r.labels["negotiation"]]
    off = [r.signals["negotiation"] for r in rows if not r.labels["negotiation"]]
    assert neg and off
    for name in ("score_ratio", "body_sentences"):
        assert np.mean([s[name] for s in neg]) > np.mean([s[name] for s in off]), name
    assert all(f.high and f.low for f in FEATURES)


def test_fit_logistic_separates_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).astype(float)
    coef, intercept = fit_logistic(x, y, l2=1.0)
    assert coef[0] > 1 and coef[1] < 0 and abs(coef[2]) < 0.5
    again = fit_logistic(x, y, l2=1.0)
    assert np.array_equal(coef, again[0]) and intercept == again[1]
    # a stronger penalty shrinks the weights
    assert np.abs(fit_logistic(x, y, l2=100.0)[0]).sum() < np.abs(coef).sum()


def test_train_is_reproducible_and_the_file_round_trips(rows: list, tmp_path: Path) -> None:
    topics = ["negotiation", "ceasefire", "aid"]
    first = train_model(rows, topics, select=False)
    second = train_model(list(reversed(rows)), topics, select=False)
    assert first.to_json() == second.to_json()  # same data and seed: the same bytes
    path = tmp_path / "m.model.json"
    first.save(path)
    loaded = LearnedModel.load(path)
    assert loaded.to_json() == first.to_json()
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and data["version"] == 1 and data["seed"] == first.meta["seed"]
    for tm in loaded.topics.values():
        for r in rows[:20]:
            # the file rounds weights to 6 decimals
            assert tm.probability(r.signals[tm.topic]) == pytest.approx(
                first.topics[tm.topic].probability(r.signals[tm.topic]), rel=1e-4, abs=1e-6)


def test_a_model_file_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.model.json"
    path.write_text(json.dumps({"format": FORMAT, "version": 99, "topics": []}))
    with pytest.raises(ValueError, match="version 99"):
        LearnedModel.load(path)
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not a model file"):
        LearnedModel.load(path)


def test_verdicts_explain_their_pushes(rows: list) -> None:
    model = train_model(rows, ["negotiation", "ceasefire", "aid"], select=False)
    tm = model.topics["negotiation"]
    consulted = 0
    for r in rows:
        v = tm.verdict(r.signals["negotiation"], r.rules_fired["negotiation"])
        if v.decided_by == "rules":
            continue
        consulted += 1
        assert v.pushes and all(isinstance(w, str) and "_" not in w for w, _ in v.pushes)
        words = v.words()
        assert words.startswith("learned stage") and f"{v.cutoff:.2f}" in words
        # What decided the verdict comes first: a push over for a yes, a hold under for a no.
        if v.probability >= v.cutoff:
            assert "pushed over by" in words or "held back by" in words
            assert "held under by" not in words
        else:
            assert "held under by" in words or "for it:" in words
            assert "pushed over by" not in words
    assert consulted  # the band holds some articles of the subset


def test_cross_validation_reports_three_systems(rows: list) -> None:
    result = cross_validate(rows, ["negotiation", "ceasefire", "aid"], folds=3)
    assert set(result) == {"rules", "model", "both"}
    for ev in result.values():
        for score in ev.scores.values():
            assert score.labelled == len(rows)
    # rules alone need no fitting: their counts are the plain evaluation's
    rules = result["rules"].scores["negotiation"]
    assert rules.tp == sum(r.rules_fired["negotiation"] and r.labels["negotiation"] for r in rows)


def test_train_model_file_classifier_eval_end_to_end(tmp_path: Path) -> None:
    """newsmon train writes the model beside the pack; the classifier loads it; eval
    prints rules alone and with the learned stage; train --cv prints three systems."""
    data = _subset(tmp_path)
    pack_dir = tmp_path / "rules"
    pack_dir.mkdir()
    pack = pack_dir / "ukraine-war.yaml"
    shutil.copy(PACK_FILE, pack)
    runner = CliRunner()
    # Rule features only (fast); the embedding is tested in test_learned_embedding.py.
    res = runner.invoke(cli, ["train", "-i", str(data), "-r", str(pack), "--cv", "3", "--keep-all",
                              "--no-embeddings"])
    assert res.exit_code == 0, res.output
    model_file = model_path_for(pack)
    assert model_file == pack_dir / "ukraine-war.model.json" and model_file.exists()
    for system in ("rules alone", "learned model alone", "rules + learned stage"):
        assert f"3-fold cross-validated: {system}" in res.output
    first = model_file.read_bytes()
    res = runner.invoke(cli, ["train", "-i", str(data), "-r", str(pack), "--keep-all",
                              "--no-embeddings"])
    assert res.exit_code == 0 and model_file.read_bytes() == first  # reproducible

    clf = Classifier(load_rules([pack]), Analyser())
    assert clf.learned is not None and clf.learned_path == model_file
    res = runner.invoke(cli, ["eval", "-i", str(data), "-r", str(pack), "--json"])
    assert res.exit_code in (0, 1), res.output
    out = json.loads(res.output)
    assert out["learned"]["current"] is True and out["rules_alone"]
    res = runner.invoke(cli, ["eval", "-i", str(data), "-r", str(pack)])
    assert "rules + learned stage" in res.output and str(model_file) in res.output
    res = runner.invoke(cli, ["eval", "-i", str(data), "-r", str(pack), "--no-model"])
    assert "rules + learned stage" not in res.output

    # The classifier's own verdicts agree with eval's "both" system.
    judged = evaluate_systems(clf.judge, [t.id for t in clf.topics], read_jsonl(data))
    assert set(judged) == {"rules", "both"}
    fired = {t: s.tp + s.fp for t, s in judged["both"].scores.items()}
    direct = {t.id: 0 for t in clf.topics}
    for item in labelled_articles(read_jsonl(data)):
        for m in clf.classify(item.article):
            direct[m.topic] += 1
    assert fired == direct

    # A pack edited after training: the model still loads, eval says it is stale.
    pack.write_text(pack.read_text() + "\n# edited\n")
    res = runner.invoke(cli, ["eval", "-i", str(data), "-r", str(pack)])
    assert "trained on another version of the rule pack" in res.output


def test_shipped_model_file_loads_with_the_pack() -> None:
    path = model_path_for(PACK_FILE)
    if not path.exists():
        pytest.skip(f"{path} is not shipped: rules alone decide")
    model = LearnedModel.load(path)
    clf = Classifier(load_rules([PACK_FILE]), Analyser())
    assert clf.learned is not None and set(clf.learned.topics) == set(model.topics)
    assert set(model.topics) | set(model.meta["rules_alone"]) == {"negotiation", "ceasefire", "aid"}
    assert clf.check_examples() == []  # the pack's examples hold with the learned stage too


def test_a_model_that_beats_no_rule_leaves_every_topic_to_the_rules(tmp_path: Path) -> None:
    """Few labels: nested CV keeps no topic's model; the file says why, and the
    classifier with it judges exactly as the rules alone."""
    data = _subset(tmp_path, 60)
    pack = tmp_path / "ukraine-war.yaml"
    shutil.copy(PACK_FILE, pack)
    res = CliRunner().invoke(cli, ["train", "-i", str(data), "-r", str(pack)])
    assert res.exit_code == 0, res.output
    model = LearnedModel.load(model_path_for(pack))
    assert set(model.topics) | set(model.meta["rules_alone"]) == {"negotiation", "ceasefire", "aid"}
    for topic, why in model.meta["rules_alone"].items():
        assert topic not in model.topics and ("out-of-fold F1" in why or "labels" in why)
    if model.topics:
        pytest.skip("this subset kept a topic's model")
    with_file = Classifier(load_rules([pack]), Analyser())
    judged = evaluate_systems(with_file.judge, ["negotiation", "ceasefire", "aid"], read_jsonl(data))
    assert {t: (s.tp, s.fp) for t, s in judged["both"].scores.items()} == {
        t: (s.tp, s.fp) for t, s in judged["rules"].scores.items()}


def test_a_verdict_next_to_its_cutoff_shows_the_digits_that_separate_them() -> None:
    from monitor.rules.learned import Verdict

    v = Verdict(probability=0.4996, cutoff=0.5, fired=False, rules_fired=False,
                decided_by="model", pushes=(("a short article", -0.4),))
    assert "0.4996 < 0.5000" in v.words() and "held under by a short article" in v.words()
