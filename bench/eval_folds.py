"""K-fold evaluation of the rule pack on a labelled set (default: train.jsonl).

Rules are hand-written, so there is nothing to fit per fold: the folds are a
discipline for tuning. Study the errors of the study folds only (``--errors``
prints them, never those of the check fold) and watch that the check fold's
figures do not drop as the rules change. Folds are fixed: ids sorted, shuffled
with a fixed seed, dealt round-robin.

Prints per-fold and mean ± spread (population std, and min–max) P/R/F1 per
topic, the pooled figures, and the pack's matching cost per article. The rules
are judged alone (a learned model beside the pack is ignored); ``--learned``
adds the same folds' figures of the learned model alone and of rules + model,
each fold's model trained on the other folds (as ``newsmon train --cv``).

Run: ``.venv/bin/python bench/eval_folds.py [--input FILE] [--folds 5]
[--seed 20240501] [--check-fold 4] [--errors] [--learned]``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.analysis.analyser import Analyser  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.rules.classifier import Classifier  # noqa: E402
from monitor.rules.evaluation import article_from_record  # noqa: E402
from monitor.rules.ruleset import load_rules  # noqa: E402

TRAIN = REPO.parent / "shared" / "eval" / "train.jsonl"
CONFIG = REPO / "config" / "newsmon.yaml"


def folds_of(ids: list[str], k: int, seed: int) -> dict[str, int]:
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return {i: n % k for n, i in enumerate(order)}


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", type=Path, default=TRAIN)
    ap.add_argument("--rules", type=Path, action="append", default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--check-fold", type=int, default=4,
                    help="the held-back fold: its errors are never printed")
    ap.add_argument("--errors", action="store_true",
                    help="list false positives/negatives of the study folds")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--learned", action="store_true",
                    help="also cross-validate the learned stage (model alone, rules + model)")
    args = ap.parse_args()

    paths = args.rules or load_config(CONFIG).rule_files()
    clf = Classifier(load_rules(paths), Analyser(), learned=None)
    topics = [t.id for t in clf.topics]
    recs = [json.loads(line) for line in args.input.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    fold = folds_of([r["id"] for r in recs], args.folds, args.seed)

    counts = {(f, t): [0, 0, 0] for f in range(args.folds) for t in topics}  # tp fp fn
    errors: dict[str, list[str]] = {t: [] for t in topics}
    match_time = 0.0
    words = 0
    for rec in recs:
        art = article_from_record(rec)
        analysed = clf.analyse(art)  # in its own language
        start = time.perf_counter()
        fired = {m.topic for m in clf.classify_analysed(art, analysed)}
        match_time += time.perf_counter() - start
        words += len(rec.get("text", "").split()) + len((rec.get("title") or "").split())
        f = fold[rec["id"]]
        for t in topics:
            gold, got = bool(rec["labels"].get(t)), t in fired
            c = counts[(f, t)]
            if gold and got:
                c[0] += 1
            elif got:
                c[1] += 1
            elif gold:
                c[2] += 1
            if gold != got and f != args.check_fold:
                errors[t].append(f"{'FP' if got else 'FN'} {rec['id']}")

    out: dict[str, dict] = {}
    print(f"{args.input.name}: {len(recs)} articles, {args.folds} folds (seed {args.seed}), "
          f"check fold {args.check_fold}")
    print(f"{'topic':<12} " + " ".join(f"{'fold' + str(f):>17}" for f in range(args.folds))
          + f" {'mean ± sd [min-max] F1':>28} {'pooled P/R/F1':>20}")
    for t in topics:
        per = [prf(*counts[(f, t)]) for f in range(args.folds)]
        tot = [sum(counts[(f, t)][i] for f in range(args.folds)) for i in range(3)]
        pooled = prf(*tot)
        cells = " ".join(f"{p:.2f}/{r:.2f}/{fv:.2f}".rjust(17) for p, r, fv in per)
        fs = [x[2] for x in per]
        print(f"{t:<12} {cells} "
              f"{statistics.mean(fs):>8.3f} ± {statistics.pstdev(fs):.3f} "
              f"[{min(fs):.2f}-{max(fs):.2f}] "
              f"{pooled[0]:>6.3f}/{pooled[1]:.3f}/{pooled[2]:.3f}")
        out[t] = {
            "folds": [dict(zip(("p", "r", "f1"), x, strict=True)) for x in per],
            "mean": {k: statistics.mean(x[i] for x in per) for i, k in enumerate(("p", "r", "f1"))},
            "sd": {k: statistics.pstdev(x[i] for x in per) for i, k in enumerate(("p", "r", "f1"))},
            "pooled": dict(zip(("p", "r", "f1"), pooled, strict=True)),
        }
    for t in topics:
        mp = out[t]["mean"]
        sd = out[t]["sd"]
        print(f"  {t:<12} mean P {mp['p']:.3f}±{sd['p']:.3f}  R {mp['r']:.3f}±{sd['r']:.3f}  "
              f"F1 {mp['f1']:.3f}±{sd['f1']:.3f}")
    print(f"matching (analysis excluded): {match_time / len(recs) * 1e6:.0f} µs per article, "
          f"{match_time / max(words, 1) * 1e9:.0f} µs per 1,000 words")
    if args.errors:
        for t in topics:
            print(f"{t} study-fold errors: {' '.join(errors[t]) or '-'}")
    if args.learned:
        from monitor.rules.embedding import available
        from monitor.rules.evaluation import cross_validate, labelled_articles, read_jsonl, training_rows

        # As newsmon train does: the sentence embedding is offered where it can be computed.
        rows = training_rows(clf, labelled_articles(read_jsonl(args.input)), embeddings=available())
        for system, ev in cross_validate(rows, topics, folds=args.folds, seed=args.seed).items():
            cells = "  ".join(f"{t} {s.precision:.3f}/{s.recall:.3f}/{s.f1:.3f}"
                              for t, s in ev.scores.items())
            print(f"pooled P/R/F1, {system:<6} {cells}")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
