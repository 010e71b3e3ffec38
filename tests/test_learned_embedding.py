"""The learned stage's optional sentence embeddings (wordllama): offline, kept only where
they win out of fold, computed only where the model has the say, and off (rules decide)
where the package is missing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from monitor.analysis.analyser import Analyser
from monitor.rules import classifier as classifier_module
from monitor.rules.classifier import Classifier
from monitor.rules.embedding import DIM, EMBEDDING, Embedder, available, embedding_signals
from monitor.rules.features import feature_names
from monitor.rules.learned import LearnedModel, TrainingRow, train_model
from monitor.rules.ruleset import load_rules
from tests.helpers.paths import REPO
from tests.helpers.rules import article

pytestmark = pytest.mark.skipif(not available(), reason="wordllama (newsmon[embeddings]) is not "
                                "installed")

PACK_FILE = REPO / "config" / "rules" / "ukraine-war.yaml"


def test_the_embedding_is_computed_offline_and_is_deterministic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedding tried to open a connection")

    monkeypatch.setattr(Embedder, "_model", None)  # load it here, with the network refused
    monkeypatch.setattr(socket.socket, "connect", no_network)
    talks = Embedder.embed("Kremlin rejects peace talks with Kyiv",
                           "Moscow said there were no grounds for negotiations yet.")
    again = Embedder.embed("Kremlin rejects peace talks with Kyiv",
                           "Moscow said there were no grounds for negotiations yet.")
    near = Embedder.embed("Russia rules out negotiations with Ukraine",
                          "The Kremlin said talks with Kyiv could not start now.")
    far = Embedder.embed("Bake-off final draws record audience",
                         "The cake competition was watched by millions on Sunday.")
    assert talks.shape == (DIM,) and abs(float(np.linalg.norm(talks)) - 1.0) < 1e-5
    assert np.array_equal(talks, again)
    assert float(talks @ near) > float(talks @ far) + 0.1


def _rows(n: int, informative: bool) -> list[TrainingRow]:
    """Articles whose label follows one embedding dimension (and not the rule features)
    when ``informative``; every article sits in the model's band (score ratio 1)."""
    rng = np.random.default_rng(7)
    names = feature_names(["other"])
    rows = []
    for i in range(n):
        label = bool(i % 2)
        vec = rng.normal(0, 1, DIM)
        if informative:
            vec[3] += 6.0 if label else -6.0
        sig = {f: float(rng.normal()) for f in names}
        sig.update(score_ratio=1.0, rules_fired=0.0, required_met=1.0, excluded=0.0)
        sig.update(embedding_signals(vec))
        rows.append(TrainingRow(f"r{i:03d}", {"t": sig}, {"t": False}, {"t": label}))
    return rows


def test_training_keeps_the_embedding_only_where_it_wins_out_of_fold() -> None:
    kept = train_model(_rows(200, informative=True), ["t"], folds=3)
    assert kept.topics["t"].uses_embedding and kept.meta["embedding"] == dict(EMBEDDING)
    verdict = kept.topics["t"].verdict(_rows(2, informative=True)[1].signals["t"], False)
    assert "wording" in verdict.words(top=6)  # one push for all the dimensions
    assert not any(w.startswith("emb:") for w, _ in verdict.pushes)

    noise = train_model(_rows(120, informative=False), ["t"], folds=3)
    assert "t" not in noise.topics and "embeddings" in noise.meta["rules_alone"]["t"]
    assert "embedding" not in noise.meta


def _model_with_embedding(tmp_path: Path) -> Path:
    """A copy of the pack with a negotiation model that reads the embedding."""
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    names = feature_names(["ceasefire", "aid"]) + tuple(f"emb:{j}" for j in range(DIM))
    topic = {"topic": "negotiation", "mode": "both", "band": [0.0, 100.0], "cutoff": 0.5,
             "intercept": 0.0,
             "features": {f: {"weight": 0.1 if f.startswith("emb:") else 0.0, "mean": 0.0,
                              "scale": 1.0} for f in names}}
    model = {"format": "newsmon-learned-stage", "version": 1, "languages": ["en"],
             "embedding": dict(EMBEDDING), "topics": [topic]}
    (tmp_path / "pack.model.json").write_text(json.dumps(model), encoding="utf-8")
    return pack


def test_the_classifier_embeds_once_and_only_where_the_model_decides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clf = Classifier(load_rules([_model_with_embedding(tmp_path)]), Analyser())
    assert clf.learned is not None and clf.learned.topics["negotiation"].uses_embedding
    calls: list[str] = []
    real = Embedder.embed

    def counting(title: str, body: str) -> np.ndarray:
        calls.append(title)
        return real(title, body)

    monkeypatch.setattr(Embedder, "embed", staticmethod(counting))
    talks = clf.explain(article("Moscow and Kyiv negotiators will meet in Istanbul, the Kremlin "
                                "said. Ukraine said the talks were a first step.",
                                title="Kremlin says peace talks with Kyiv can resume"))
    verdict = next(e for e in talks if e.topic == "negotiation").learned
    assert verdict is not None and verdict.decided_by == "model" and calls == [
        "Kremlin says peace talks with Kyiv can resume"]
    calls.clear()
    clf.explain(article("The cake competition was watched by millions on Sunday.",
                        title="Bake-off final draws record audience"))
    assert calls == []  # no term of the topic: the model is not consulted, nothing embedded


def test_without_the_package_a_model_reading_embeddings_is_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(classifier_module, "embeddings_available", lambda: False)
    clf = Classifier(load_rules([_model_with_embedding(tmp_path)]), Analyser())
    assert clf.learned is not None and "negotiation" not in clf.learned.topics
    assert "newsmon[embeddings]" in caplog.text


def test_a_model_trained_on_another_embedding_is_refused(tmp_path: Path) -> None:
    pack = _model_with_embedding(tmp_path)
    path = pack.with_name("pack.model.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["embedding"] = {**data["embedding"], "dim": 64}
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="run newsmon train again"):
        LearnedModel.load(path)


def test_train_with_embeddings_writes_a_model_the_classifier_explains_in_words(
        tmp_path: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli import cli
    from tests.helpers.paths import shared_path

    lines = shared_path("eval", "train.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    args = ["train", "-i", str(data), "-r", str(pack), "--keep-all", "--embeddings"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "reads the sentence embedding too" in res.output
    first = pack.with_name("pack.model.json").read_bytes()
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert pack.with_name("pack.model.json").read_bytes() == first  # reproducible
    model = LearnedModel.load(pack.with_name("pack.model.json"))
    assert model.meta["embedding"] == dict(EMBEDDING)
    clf = Classifier(load_rules([pack]), Analyser())
    said = [e.learned.words() for e in clf.explain(article(
        "Moscow and Kyiv negotiators will meet in Istanbul, the Kremlin said.",
        title="Kremlin says talks with Kyiv can resume")) if e.learned is not None]
    assert said and all("emb:" not in w for w in said)
