"""Story clustering and near-duplicates on the labelled dev file: full-file and held-out figures.

    .venv/bin/python bench/stories_eval.py [/work/shared/eval/stories-dev.jsonl]

Prints pairwise precision/recall/F1 for "same story" and near-duplicate P/R with
the shipped defaults (IDF primed from the file's words, as the stored corpus
would be, and learnt online from nothing), then a 2-fold split by story: the
three tuned knobs (threshold, head weight, day penalty) are chosen on one half
and scored on the other, both ways round.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

from monitor.stories.clustering import StoryConfig
from monitor.stories.evaluation import LabelledArticle, evaluate_file, load_labelled

DEFAULT_PATH = Path("/work/shared/eval/stories-dev.jsonl")
GRID_THRESHOLD = (0.15, 0.20, 0.25, 0.30)
GRID_HEAD_WEIGHT = (2.0, 3.0, 5.0)
GRID_DAY_PENALTY = (0.0, 0.05, 0.10, 0.15)


def fold_of(article: LabelledArticle) -> int:
    """Whole stories (and singletons) go to one fold, by a stable hash of the story or article id."""
    key = article.story or article.features.article_id
    return hashlib.blake2b(key.encode(), digest_size=2).digest()[0] % 2


def tune(articles: list[LabelledArticle]) -> tuple[StoryConfig, float]:
    best = (StoryConfig(), -1.0)
    for threshold, head_weight, day_penalty in itertools.product(GRID_THRESHOLD, GRID_HEAD_WEIGHT,
                                                                 GRID_DAY_PENALTY):
        config = replace(StoryConfig(), threshold=threshold, head_weight=head_weight, day_penalty=day_penalty)
        f1 = evaluate_file(articles, config).pairs.f1
        if f1 > best[1]:
            best = (config, f1)
    return best


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_PATH
    if not path.exists():
        print(f"{path} not found", file=sys.stderr)
        return 2
    started = time.perf_counter()
    articles = load_labelled(path)
    print(f"{len(articles)} articles from {path} (features in {time.perf_counter() - started:.2f} s)")

    defaults = StoryConfig()
    print(f"\ndefaults: threshold {defaults.threshold}, head weight {defaults.head_weight}, "
          f"day penalty {defaults.day_penalty}, window {defaults.window.days} days")
    started = time.perf_counter()
    full = evaluate_file(articles, defaults)
    elapsed = (time.perf_counter() - started) / len(articles) * 1000
    print(f"  full file, IDF from the corpus   same story  {full.pairs.line()}")
    print(f"                                   near-dup    {full.near_dups.line()}  (directed copy → fuller)")
    print(f"                                   near-dup    {full.near_dups_undirected.line()}  (undirected)")
    print(f"                                   {full.stories_predicted} stories of 2+ predicted, "
          f"{elapsed:.2f} ms an article")
    online = evaluate_file(articles, defaults, prime=False)
    print(f"  full file, IDF learnt online     same story  {online.pairs.line()}")

    folds = [[a for a in articles if fold_of(a) == k] for k in (0, 1)]
    print("\n2-fold split by story (tune on one half, score the other):")
    held_tp = held_pred = held_actual = 0
    for tune_fold, test_fold in ((0, 1), (1, 0)):
        config, tuned_f1 = tune(folds[tune_fold])
        held = evaluate_file(folds[test_fold], config)
        at_defaults = evaluate_file(folds[test_fold], defaults)
        held_tp += held.pairs.true_positives
        held_pred += held.pairs.predicted
        held_actual += held.pairs.actual
        print(f"  tuned on fold {tune_fold} ({len(folds[tune_fold])} articles, F1 {tuned_f1:.3f}): threshold "
              f"{config.threshold}, head weight {config.head_weight}, day penalty {config.day_penalty}")
        print(f"    fold {test_fold} held out ({len(folds[test_fold])}): {held.pairs.line()}")
        print(f"    fold {test_fold} at the defaults:  {at_defaults.pairs.line()}; "
              f"near-dup {at_defaults.near_dups.line()}")
    precision = held_tp / held_pred if held_pred else 1.0
    recall = held_tp / held_actual if held_actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(f"  held-out, both folds pooled: P {precision:.3f}  R {recall:.3f}  F1 {f1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
