"""Measuring a rule pack against labelled articles: precision, recall, F1 per topic.

A library, not a command: ``newsmon eval`` prints what :func:`evaluate`
returns, and the benchmarks, cross-validation scripts and a future web view
call it the same way. Labelled articles are JSON lines (the format of
``../shared/eval/dev.jsonl``): ``id``, ``title``, ``text``, ``labels``
``{topic: 0/1}``; optional ``summary``, ``tags``, ``language``,
``date``/``published``, ``url``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.models import Article
from monitor.rules.learned import TrainingRow

__all__ = [
    "SYSTEMS",
    "Evaluation",
    "JsonLine",
    "Labelled",
    "TopicScore",
    "article_from_record",
    "count_lines",
    "cross_validate",
    "evaluate",
    "evaluate_systems",
    "labelled_articles",
    "read_jsonl",
    "training_rows",
]


@dataclass(slots=True)
class JsonLine:
    """One non-empty line of a JSON-lines file: its record, or why it is bad."""

    number: int
    record: dict[str, Any] | None
    error: str | None = None


def read_jsonl(path: Path) -> Iterator[JsonLine]:
    """Each non-empty line as a dict with an ``id``, or an error naming the line."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield JsonLine(number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(rec, dict):
                yield JsonLine(number, None, "a line must be a JSON object")
            elif "id" not in rec or not isinstance(rec["id"], str | int):
                yield JsonLine(number, None, "missing 'id' (string or number)")
            else:
                yield JsonLine(number, rec)


def count_lines(path: Path) -> int:
    """Non-empty lines in a file (for a progress bar's total)."""
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def article_from_record(rec: dict[str, Any]) -> Article:
    """A JSON record (``title``, ``text``; optional ``summary``, ``tags``, ``language``
    (or ``lang``), ``date``/``published``, ``url``) → Article. ValueError when malformed."""
    text = rec.get("text", rec.get("body", ""))
    title = rec.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise ValueError("'title' and 'text' must be strings")
    tags = rec.get("tags", rec.get("feed_tags", ())) or ()
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise ValueError("'tags' must be a list of strings")
    summary = rec.get("summary") or ""
    language = rec.get("language", rec.get("lang"))
    url = rec.get("url") or None
    return Article(
        title=title, summary=summary if isinstance(summary, str) else "", body=text,
        text_source="page", url=url if isinstance(url, str) else None, feed_tags=tuple(tags),
        language=language if isinstance(language, str) else None,
        published=_parse_date(rec.get("published", rec.get("date"))),
    )


@dataclass(slots=True)
class TopicScore:
    """A topic's confusion counts, with the ids of its errors."""

    topic: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> int:
        """How many articles carried a label for this topic (0: "no labels")."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, article_id: str, *, gold: bool, fired: bool) -> None:
        """Count one labelled article."""
        if gold and fired:
            self.tp += 1
        elif fired:
            self.fp += 1
            self.false_positives.append(article_id)
        elif gold:
            self.fn += 1
            self.false_negatives.append(article_id)
        else:
            self.tn += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "labelled": self.labelled,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4),
            "f1": round(self.f1, 4), "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "false_positives": self.false_positives, "false_negatives": self.false_negatives,
        }


@dataclass(slots=True)
class Evaluation:
    """Per-topic scores, and the input lines that could not be used (number, why)."""

    scores: dict[str, TopicScore]
    bad_lines: list[tuple[int, str]] = field(default_factory=list)

    def under(self, fail_under: float) -> list[str]:
        """Topics whose F1 is below ``fail_under``; a topic with no labels never is."""
        return [s.topic for s in self.scores.values() if s.labelled and s.f1 < fail_under]

    def as_dict(self) -> dict[str, Any]:
        return {"topics": [s.as_dict() for s in self.scores.values()],
                "bad_lines": len(self.bad_lines)}


def evaluate(fired_topics: Callable[[Article], set[str]], topics: Sequence[str],
             lines: Iterable[JsonLine], on_line: Callable[[], None] | None = None) -> Evaluation:
    """Score ``fired_topics`` (article → ids of the topics that fire) against each
    line's ``labels``. A topic missing from a line's labels is not counted for it."""
    return evaluate_systems(lambda a: {"rules": fired_topics(a)}, topics, lines, on_line)["rules"]


def evaluate_systems(judge: Callable[[Article], Mapping[str, set[str]]], topics: Sequence[str],
                     lines: Iterable[JsonLine],
                     on_line: Callable[[], None] | None = None) -> dict[str, Evaluation]:
    """``evaluate`` for several systems in one pass: ``judge`` maps an article to
    {system: ids of the topics that fire} (``Classifier.judge``: "rules", and
    "both" when a learned model is loaded). The first article fixes the systems."""
    results: dict[str, Evaluation] = {}
    bad_lines: list[tuple[int, str]] = []
    for line in lines:
        if on_line is not None:
            on_line()
        for item in labelled_articles([line], bad_lines):
            verdicts = judge(item.article)
            for system, fired in verdicts.items():
                result = results.setdefault(
                    system, Evaluation({t: TopicScore(t) for t in topics}, bad_lines))
                for topic, score in result.scores.items():
                    if topic in item.labels:
                        score.add(item.id, gold=item.labels[topic], fired=topic in fired)
    if not results:
        results["rules"] = Evaluation({t: TopicScore(t) for t in topics}, bad_lines)
    return results


@dataclass(slots=True)
class Labelled:
    """One usable labelled line: its id, article and labels (bad lines are reported apart)."""

    id: str
    article: Article
    labels: dict[str, bool]


def labelled_articles(lines: Iterable[JsonLine],
                      bad_lines: list[tuple[int, str]] | None = None) -> list[Labelled]:
    """The lines that carry ``labels``; the others go to ``bad_lines`` (number, why)."""
    out = []
    for line in lines:
        rec = line.record
        labels = rec.get("labels") if rec is not None else None
        why = line.error or "bad line" if rec is None else (
            None if isinstance(labels, dict) else "missing 'labels' ({topic: 0/1})")
        if why is None:
            try:
                article = article_from_record(rec)  # type: ignore[arg-type]  # the record was checked to be a dict above
            except ValueError as exc:
                why = str(exc)
        if why is not None:
            if bad_lines is not None:
                bad_lines.append((line.number, why))
            continue
        assert rec is not None and isinstance(labels, dict)
        out.append(Labelled(str(rec["id"]), article,
                            {str(t): bool(v) for t, v in labels.items()}))
    return out


def training_rows(classifier: Any, items: Sequence[Labelled],
                  on_item: Callable[[], None] | None = None, *,
                  embeddings: bool = False) -> list[TrainingRow]:
    """Each labelled article as the rules alone see it: per topic, the learned
    stage's features (:mod:`monitor.rules.features`) and the rules' verdict; with
    ``embeddings``, also the article's sentence embedding (:mod:`monitor.rules.embedding`)."""
    from monitor.rules.embedding import Embedder
    from monitor.rules.features import topic_signals

    rows = []
    for item in items:
        analysed = classifier.analyse(item.article)
        exps = classifier.explain_analysed(item.article, analysed, learned=False)
        ratios = {e.topic: min(4.0, e.score / e.threshold) if e.threshold else 0.0 for e in exps}
        wording = Embedder.embed_analysed(analysed) if embeddings else {}
        signals = {}
        for e in exps:
            sig = topic_signals(e.outcome, analysed)
            sig.update({f"also:{t}": r for t, r in ratios.items() if t != e.topic})
            sig.update(wording)
            signals[e.topic] = sig
        rows.append(TrainingRow(item.id, signals, {e.topic: e.fired for e in exps},
                                {t: v for t, v in item.labels.items() if t in signals},
                                language=analysed.language))
        if on_item is not None:
            on_item()
    return rows


SYSTEMS = ("rules", "model", "both")  # rules alone, the learned model alone, the two combined


def cross_validate(rows: Sequence[TrainingRow], topics: Sequence[str], *, folds: int = 5,
                   seed: int | None = None, **train: Any) -> dict[str, Evaluation]:
    """K-fold figures of rules alone, the model alone and both, per topic.

    Each fold's model is trained (cutoff and per-topic selection included) on
    the other folds only, exactly as ``newsmon train`` trains the shipped one, so
    the figures are those of a model that never saw the article it judges.
    """
    from monitor.rules.learned import DEFAULT_SEED, folds_of, train_model

    seed = DEFAULT_SEED if seed is None else seed
    fold = folds_of([r.id for r in rows], folds, seed)
    result = {s: Evaluation({t: TopicScore(t) for t in topics}) for s in SYSTEMS}
    for k in range(folds):
        fit = [r for r in rows if fold[r.id] != k]
        held = [r for r in rows if fold[r.id] == k]
        both = train_model(fit, topics, seed=seed, folds=folds, **train)
        alone = train_model(fit, topics, seed=seed, folds=folds,
                            **{**train, "mode": "model", "select": False})
        for r in held:
            for t in topics:
                if t not in r.labels:
                    continue
                gold = r.labels[t]
                result["rules"].scores[t].add(r.id, gold=gold, fired=r.rules_fired[t])
                for system, model in (("model", alone), ("both", both)):
                    tm = model.topics.get(t)
                    got = (tm.verdict(r.signals[t], r.rules_fired[t]).fired if tm is not None
                           else r.rules_fired[t])
                    result[system].scores[t].add(r.id, gold=gold, fired=got)
    return result
