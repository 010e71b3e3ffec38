"""The learned second stage: per topic, an L2 logistic regression over rule features.

Optional: ``newsmon train`` writes a small JSON file beside the rule pack
(``ukraine-war.model.json`` for ``ukraine-war.yaml``); the classifier loads it
when present and rules alone decide otherwise. The model reads only what the
rules computed (:mod:`monitor.rules.features`), so it adds microseconds, and it
stays explainable: a linear model's push from each feature is its weight times
the feature's distance from the training mean, which every verdict lists.

How the two stages combine (``mode``, chosen per model file by
cross-validation, see docs/rules.md):

- ``both``: near the threshold (rule score between ``band`` × threshold), the
  model decides, vetoing a weak rule match or rescuing a near miss; a clear
  rule verdict (score well above the band, or no term at all) stands.
- ``model``: the model decides for every article with at least one term.

Fitting is deterministic (Newton's method on a convex loss; folds dealt from a
fixed seed), so the same data, pack and seed give the same file byte for byte.
Plain numpy: scikit-learn gives the same weights and figures but adds ~200 MB
with SciPy, 1.4 s of import and 70× the fitting time (measured, see docs/rules.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.rules.embedding import EMBEDDING, PREFIX, is_embedding
from monitor.rules.features import feature_names, feature_words

__all__ = [
    "FORMAT",
    "VERSION",
    "LearnedModel",
    "TopicModel",
    "TrainingRow",
    "Verdict",
    "fit_logistic",
    "folds_of",
    "model_path_for",
    "train_model",
]

FORMAT = "newsmon-learned-stage"
VERSION = 1
DEFAULT_SEED = 20240501
DEFAULT_L2 = 3.0
DEFAULT_BAND = (0.75, 1.5)  # rule score / threshold where the model decides in mode "both"
MIN_PRECISION = 0.85  # the cutoff is chosen for F1 among those keeping precision above this


def model_path_for(rule_file: Path) -> Path:
    """Where a rule file's model lives: ``pack.yaml`` → ``pack.model.json``."""
    return rule_file.with_name(rule_file.stem + ".model.json")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The learned stage's verdict on one topic of one article."""

    probability: float
    cutoff: float
    fired: bool
    rules_fired: bool
    decided_by: str  # "model" | "rules" (outside the model's band)
    # (what the feature's value says, its push on the log-odds), strongest first
    pushes: tuple[tuple[str, float], ...] = ()

    @property
    def changed(self) -> bool:
        return self.fired != self.rules_fired

    def words(self, top: int = 3) -> str:
        """ "learned stage agrees: 0.91 ≥ 0.50; pushed over by in the headline, many body
        sentences; held back by a long article"."""
        if self.decided_by == "rules":
            return "learned stage: not consulted (the rule score is clear)"
        yes = self.probability >= self.cutoff
        sign = "≥" if yes else "<"
        # "0.50 < 0.50" reads as a contradiction: show the digits that tell them apart.
        digits = next((d for d in (2, 3, 4) if round(self.probability, d) != round(self.cutoff, d)), 4)
        what = ("rescued a near miss" if self.fired and not self.rules_fired else
                "vetoed the rule match" if self.rules_fired and not self.fired else
                "agrees")
        up = [w for w, c in self.pushes if c > 0.05][:top]
        down = [w for w, c in self.pushes if c < -0.05][:top]
        parts = [f"learned stage {what}: {self.probability:.{digits}f} {sign} "
                 f"{self.cutoff:.{digits}f}"]
        # Lead with what decided it: what pushed a yes over, what held a no under.
        if yes:
            if up:
                parts.append("pushed over by " + ", ".join(up))
            if down:
                parts.append("held back by " + ", ".join(down))
        else:
            if down:
                parts.append("held under by " + ", ".join(down))
            if up:
                parts.append("for it: " + ", ".join(up))
        return "; ".join(parts)


@dataclass(slots=True)
class TopicModel:
    """One topic's logistic regression over standardised features."""

    topic: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    cutoff: float = 0.5
    mode: str = "both"
    band: tuple[float, float] = DEFAULT_BAND

    @property
    def uses_embedding(self) -> bool:
        return any(is_embedding(f) for f in self.features)

    def consults(self, signals: Mapping[str, float], rules_fired: bool) -> bool:
        """Whether the model has the say on this article (else the rules' verdict stands):
        the classifier computes costly features (the embedding) only then."""
        return self.decide(1.0, signals, rules_fired)[1] == "model"

    def vector(self, signals: Mapping[str, float]) -> np.ndarray:
        return np.array([float(signals.get(f, 0.0)) for f in self.features])

    def probability(self, signals: Mapping[str, float]) -> float:
        z = (self.vector(signals) - self.mean) / self.scale
        return _sigmoid(float(z @ self.coef) + self.intercept)

    def verdict(self, signals: Mapping[str, float], rules_fired: bool) -> Verdict:
        x = self.vector(signals)
        push = (x - self.mean) / self.scale * self.coef
        p = _sigmoid(float(push.sum()) + self.intercept)
        named: list[tuple[str, float]] = []
        wording = 0.0  # the embedding's dimensions mean nothing one by one: one push for all
        for i, name in enumerate(self.features):
            if is_embedding(name):
                wording += float(push[i])
            else:
                named.append((feature_words(name, bool(x[i] > self.mean[i])), float(push[i])))
        if self.uses_embedding:
            named.append(("wording like the topic's articles" if wording > 0 else
                          "wording unlike the topic's articles", wording))
        named.sort(key=lambda wp: -abs(wp[1]))
        pushes = tuple((w, round(c, 3)) for w, c in named[:6] if abs(c) > 1e-9)
        fired, by = self.decide(p, signals, rules_fired)
        return Verdict(probability=round(p, 4), cutoff=self.cutoff, fired=fired,
                       rules_fired=rules_fired, decided_by=by, pushes=pushes)

    def decide(self, p: float, signals: Mapping[str, float], rules_fired: bool) -> tuple[bool, str]:
        ratio = float(signals.get("score_ratio", 0.0))
        if ratio <= 0:
            return False, "rules"  # no term at all: nothing for the model to weigh
        if not rules_fired and (signals.get("required_met", 1.0) < 1.0
                                or signals.get("excluded", 0.0) > 0):
            # A failed require or a held exclusion is the rule writer's word: the
            # model rescues near misses on score only.
            return False, "rules"
        if self.mode == "both" and not self.band[0] <= ratio < self.band[1]:
            return rules_fired, "rules"
        return p >= self.cutoff, "model"

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic, "mode": self.mode, "band": list(self.band),
            "cutoff": round(self.cutoff, 4), "intercept": round(self.intercept, 6),
            "features": {f: {"weight": round(float(c), 6), "mean": round(float(m), 6),
                             "scale": round(float(s), 6)}
                         for f, c, m, s in zip(self.features, self.coef, self.mean, self.scale,
                                               strict=True)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicModel:
        feats = data["features"]
        names = tuple(feats)
        return cls(
            topic=str(data["topic"]), features=names,
            mean=np.array([feats[f]["mean"] for f in names], dtype=float),
            scale=np.array([feats[f]["scale"] for f in names], dtype=float),
            coef=np.array([feats[f]["weight"] for f in names], dtype=float),
            intercept=float(data["intercept"]), cutoff=float(data.get("cutoff", 0.5)),
            mode=str(data.get("mode", "both")),
            band=tuple(data.get("band", DEFAULT_BAND)),
        )


@dataclass(slots=True)
class LearnedModel:
    """Every topic's model, and what it was trained on (for ``newsmon eval``)."""

    topics: dict[str, TopicModel]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {"format": FORMAT, "version": VERSION, **self.meta,
                "topics": [m.as_dict() for m in self.topics.values()]}
        return json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False) + "\n"

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    def judges(self, language: str) -> bool:
        """Whether the model saw articles of ``language`` in training (the features of
        another language's rules are not what it learned)."""
        languages = self.meta.get("languages")
        return not languages or language in languages

    @classmethod
    def load(cls, path: Path) -> LearnedModel:
        """Read a model file; ValueError when it is not one this version reads."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a model file ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        if data.get("version") != VERSION:
            raise ValueError(f"{path}: model version {data.get('version')!r}, this newsmon reads "
                             f"{VERSION}: run newsmon train again")
        try:
            topics = {m.topic: m for m in (TopicModel.from_dict(t) for t in data["topics"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed model ({exc})") from exc
        meta = {k: v for k, v in data.items() if k not in ("format", "version", "topics")}
        if any(m.uses_embedding for m in topics.values()) and meta.get("embedding") != dict(EMBEDDING):
            raise ValueError(f"{path}: trained on embeddings {meta.get('embedding')!r}, this "
                             f"newsmon computes {dict(EMBEDDING)!r}: run newsmon train again")
        return cls(topics=topics, meta=meta)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = DEFAULT_L2,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method (intercept not penalised).

    The loss is convex and the steps deterministic: no seed, no learning rate.
    """
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w[:-1], float(w[-1])


def folds_of(ids: Sequence[str], k: int, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Fixed folds: ids sorted, shuffled with ``seed``, dealt round-robin."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return {i: n % k for n, i in enumerate(order)}


@dataclass(frozen=True, slots=True)
class TrainingRow:
    """One labelled article as the rules saw it: per topic, features and gold label."""

    id: str
    signals: dict[str, dict[str, float]]  # topic -> feature -> value
    rules_fired: dict[str, bool]
    labels: dict[str, bool]
    language: str = "en"  # whose analyser judged it: the model judges only languages it saw


def topic_matrix(rows: Sequence[TrainingRow], topic: str, names: Sequence[str]) -> np.ndarray:
    return np.array([[r.signals[topic].get(f, 0.0) for f in names] for r in rows], dtype=float)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return mean, scale


def _fit_topic(rows: Sequence[TrainingRow], topic: str, names: tuple[str, ...], l2: float,
               mode: str, band: tuple[float, float], cutoff: float = 0.5) -> TopicModel:
    x = topic_matrix(rows, topic, names)
    y = np.array([float(r.labels[topic]) for r in rows])
    mean, scale = _standardise(x)
    coef, intercept = fit_logistic((x - mean) / scale, y, l2)
    return TopicModel(topic=topic, features=names, mean=mean, scale=scale, coef=coef,
                      intercept=intercept, cutoff=cutoff, mode=mode, band=band)


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return (2 * p * r / (p + r) if p + r else 0.0), p


def _pick_cutoff(model_rows: list[tuple[TopicModel, TrainingRow]], topic: str) -> float:
    """The cutoff with the best F1 among those with precision ≥ MIN_PRECISION, on
    out-of-fold predictions (ties: the one nearest 0.5)."""
    scored = [(m.probability(r.signals[topic]), r) for m, r in model_rows]
    best: tuple[bool, float, float] | None = None
    chosen = 0.5
    for cut in np.round(np.arange(0.2, 0.81, 0.025), 3):
        tp = fp = fn = 0
        for (p, r), (m, _) in zip(scored, model_rows, strict=True):
            got, _by = _decide_at(m, p, r, topic, float(cut))
            gold = r.labels[topic]
            tp += got and gold
            fp += got and not gold
            fn += gold and not got
        f1, precision = _f1(tp, fp, fn)
        key = (precision >= MIN_PRECISION, round(f1, 6), -abs(float(cut) - 0.5))
        if best is None or key > best:
            best = key
            chosen = float(cut)
    return chosen


def _decide_at(m: TopicModel, p: float, r: TrainingRow, topic: str, cut: float) -> tuple[bool, str]:
    old = m.cutoff
    m.cutoff = cut
    try:
        return m.decide(p, r.signals[topic], r.rules_fired[topic])
    finally:
        m.cutoff = old


def out_of_fold(rows: Sequence[TrainingRow], topic: str, names: tuple[str, ...], *, folds: int,
                seed: int, l2: float, mode: str, band: tuple[float, float],
                tune_cutoff: bool = True) -> list[tuple[TopicModel, TrainingRow]]:
    """Each row with the model fitted without its fold (cutoffs tuned inside the fold)."""
    fold = folds_of([r.id for r in rows], folds, seed)
    out: list[tuple[TopicModel, TrainingRow]] = []
    for k in range(folds):
        train = [r for r in rows if fold[r.id] != k]
        model = _fit_topic(train, topic, names, l2, mode, band)
        if tune_cutoff:
            model.cutoff = _pick_cutoff(
                out_of_fold(train, topic, names, folds=folds, seed=seed, l2=l2, mode=mode,
                            band=band, tune_cutoff=False), topic)
        out.extend((model, r) for r in rows if fold[r.id] == k)
    return out


MIN_GAIN = 0.005  # out-of-fold F1 a topic's model must add over its rules to be kept


def _oof_f1(oof: list[tuple[TopicModel, TrainingRow]], topic: str,
            use_model: bool) -> tuple[float, float]:
    """F1 and precision of out-of-fold verdicts (each fold's model with its own cutoff)."""
    tp = fp = fn = 0
    for m, r in oof:
        got = m.verdict(r.signals[topic], r.rules_fired[topic]).fired if use_model \
            else r.rules_fired[topic]
        gold = r.labels[topic]
        tp += got and gold
        fp += got and not gold
        fn += gold and not got
    return _f1(tp, fp, fn)


def train_model(rows: Sequence[TrainingRow], topics: Sequence[str], *, seed: int = DEFAULT_SEED,
                l2: float = DEFAULT_L2, mode: str = "both", band: tuple[float, float] = DEFAULT_BAND,
                folds: int = 5, select: bool = True,
                meta: Mapping[str, Any] | None = None) -> LearnedModel:
    """Fit every labelled topic; its cutoff is picked on out-of-fold predictions.

    With ``select`` (mode ``both``), a topic whose model does not beat its rules
    by ``MIN_GAIN`` F1 in nested cross-validation (at precision ≥ ``MIN_PRECISION``)
    is left to the rules: the file lists it under ``rules_alone``, with the figures.
    """
    models: dict[str, TopicModel] = {}
    rules_alone: dict[str, str] = {}
    for topic in topics:
        labelled = [r for r in rows if topic in r.labels]
        if len({r.labels[topic] for r in labelled}) < 2:
            rules_alone[topic] = "no labels of both kinds"
            continue
        rule_names = feature_names([t for t in topics if t != topic])
        # With embeddings in the rows, the model may also read the article's wording; each
        # feature set is judged the same way and the better kept (by nested CV).
        embedded = tuple(sorted((f for f in labelled[0].signals[topic] if is_embedding(f)),
                                key=lambda f: int(f[len(PREFIX):])))
        candidates = [rule_names] + ([rule_names + embedded] if embedded else [])
        selecting = select and mode == "both"
        if not selecting:
            candidates = candidates[-1:]  # no selection: every feature the rows carry
        chosen: tuple[TopicModel, float] | None = None
        why_not: list[str] = []
        for names in candidates:
            model = _fit_topic(labelled, topic, names, l2, mode, band)
            oof = out_of_fold(labelled, topic, names, folds=folds, seed=seed, l2=l2, mode=mode,
                              band=band, tune_cutoff=False)
            model.cutoff = _pick_cutoff(oof, topic)
            if not selecting:
                chosen = (model, 0.0)
                continue
            # Judged on folds whose cutoff was itself picked without them (nested):
            # picking the cutoff on the same predictions flatters the model.
            nested = out_of_fold(labelled, topic, names, folds=folds, seed=seed, l2=l2,
                                 mode=mode, band=band, tune_cutoff=True)
            learned_f1, learned_p = _oof_f1(nested, topic, use_model=True)
            rules_f1, _ = _oof_f1(nested, topic, use_model=False)
            kind = "with the model and embeddings" if model.uses_embedding else "with the model"
            if learned_f1 < rules_f1 + MIN_GAIN or learned_p < MIN_PRECISION:
                why_not.append(f"out-of-fold F1 {learned_f1:.3f} (P {learned_p:.3f}) {kind} "
                               f"vs {rules_f1:.3f} by rules alone")
            elif chosen is None or learned_f1 > chosen[1] + MIN_GAIN:
                chosen = (model, learned_f1)
        if chosen is None:
            rules_alone[topic] = "; ".join(why_not)
            continue
        models[topic] = chosen[0]
    info: dict[str, Any] = {"seed": seed, "l2": l2, "folds": folds, "mode": mode, **(meta or {}),
                            "languages": sorted({r.language for r in rows}),
                            "rules_alone": rules_alone}
    if any(m.uses_embedding for m in models.values()):
        info["embedding"] = dict(EMBEDDING)
    return LearnedModel(topics=models, meta=info)
