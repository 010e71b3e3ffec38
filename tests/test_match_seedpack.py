"""The shipped seed pack (config/rules/ukraine-war.yaml): seed, examples, dev figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.rules.classifier import Classifier
from monitor.rules.evaluation import evaluate, read_jsonl
from tests.helpers.paths import SEED
from tests.helpers.rules import DEV, PACK, article

# Dev figures of the rules alone when this floor was set (the pack re-tuned on
# train.jsonl: P/R/F1 0.893/0.962/0.926, 0.808/0.955/0.875, 0.875/1.000/0.933; docs/rules.md
# has the table): the floor sits a little under them so that a rule change that loses
# ground fails here. Rules alone, because the shipped learned stage was fitted on
# train.jsonl and dev.jsonl together: with it, dev figures are training figures.
FLOOR = {
    "negotiation": {"precision": 0.87, "recall": 0.94, "f1": 0.90},
    "ceasefire": {"precision": 0.78, "recall": 0.93, "f1": 0.85},
    "aid": {"precision": 0.85, "recall": 0.97, "f1": 0.91},
}

@pytest.fixture(scope="module")
def pack() -> Classifier:
    return Classifier.from_files([PACK])


def test_pack_topics(pack: Classifier) -> None:
    assert [t.id for t in pack.topics] == ["negotiation", "ceasefire", "aid"]


def test_seed_fires_all_three_topics(pack: Classifier) -> None:
    matches = pack.classify(article(SEED.read_text(encoding="utf-8")))
    assert {m.topic for m in matches} == {"negotiation", "ceasefire", "aid"}
    for m in matches:
        assert m.evidence and all("**" in e.marked for e in m.evidence)
        assert m.score >= m.threshold


def test_pack_examples_pass(pack: Classifier) -> None:
    assert pack.check_examples() == []
    for t in pack.topics:
        assert t.should_match and t.should_not_match, t.id


@pytest.mark.parametrize("text", [
    "Brittney Griner was freed in a prisoner swap negotiated with Moscow. "
    "The WNBA star's release followed months of negotiations over Griner.",
    "Veterans in London marked Armistice Day. Armistice Day services were held.",
    "The Gaza ceasefire held. Israel and Hamas traded accusations over the truce.",
])
def test_listed_traps_do_not_fire(pack: Classifier, text: str) -> None:
    assert pack.classify(article(text + " Russia, Ukraine and Kyiv were not involved.")) == []


def test_dev_figures_stay_above_the_floor(pack: Classifier) -> None:
    if not DEV.exists():
        pytest.skip(f"{DEV} is absent: the shared eval set sits beside the checkout")
    rules = Classifier(pack.ruleset, pack.analysers, learned=None)
    result = evaluate(lambda a: {m.topic for m in rules.classify(a)}, [t.id for t in rules.topics],
                      read_jsonl(DEV))
    assert result.bad_lines == []
    got = {t: s.as_dict() for t, s in result.scores.items()}
    for topic, floor in FLOOR.items():
        for metric, minimum in floor.items():
            assert got[topic][metric] >= minimum, (topic, metric, got[topic])


def test_dev_file_is_readable_jsonl() -> None:
    if not DEV.exists():
        pytest.skip(f"{DEV} is absent")
    first = json.loads(Path(DEV).read_text(encoding="utf-8").splitlines()[0])
    assert set(first["labels"]) == {"negotiation", "ceasefire", "aid"}
