"""Helpers shared by the rule/match tests (no tests here): build a Classifier from YAML."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

from monitor.analysis.analyser import Analyser
from monitor.models import Article
from monitor.rules.classifier import Classifier
from monitor.rules.ruleset import load_rules
from tests.helpers.paths import REPO, SHARED

DEV = SHARED / "eval" / "dev.jsonl"
PACK = REPO / "config" / "rules"


def write_rules(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def classifier(tmp_path: Path, text: str) -> Classifier:
    return Classifier(load_rules([write_rules(tmp_path, text)]), Analyser())


def article(body: str = "", title: str = "", summary: str = "", *, tags: tuple[str, ...] = (),
            language: str | None = None, published: datetime | None = None) -> Article:
    return Article(title=title, summary=summary, body=body, text_source="page", url=None,
                   feed_tags=tags, language=language, published=published)


def fired(clf: Classifier, art: Article) -> set[str]:
    return {m.topic for m in clf.classify(art)}


def one_topic(terms: str, extra: str = "", threshold: float = 1) -> str:
    """A rule file with one topic ``t``; ``terms`` is YAML for its terms list."""
    return (
        "topics:\n"
        "  - id: t\n"
        f"    threshold: {threshold}\n"
        "    fields: {title: 1, summary: 1, lede: 1, body: 1}\n"
        f"    terms: {terms}\n"
        + "".join(f"    {line}\n" for line in extra.splitlines() if line.strip())
    )
