"""Classification cost of the shipped rule pack per 1,000-word article.

``bench/rules_bench.py`` times synthetic rules; this times the real pack
(config/newsmon.yaml's rules) over dev and train texts, each cut or repeated
to ~1,000 words: the analysis (spaCy, paid once per article), the matching by
rules alone, and the matching with the learned stage (the model file beside the
pack, when there is one). Budget: analysis + matching + learned stage ≤ 10 ms.
Prints the median over 3 runs of the mean CPU time per article (one core), and the
slowest article (wall time).

Run: ``.venv/bin/python bench/pack_bench.py [--articles N]``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.analysis.analyser import Analyser  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.models import Article  # noqa: E402
from monitor.rules.classifier import Classifier  # noqa: E402
from monitor.rules.ruleset import load_rules  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"
WORDS = 1_000


def texts(n: int) -> list[tuple[str, str]]:
    out = []
    for name in ("dev.jsonl", "train.jsonl"):
        for line in (EVAL / name).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            words = rec["text"].split(" ")
            if len(rec["text"].split()) < 100:
                continue
            while len(words) < WORDS:
                words = words + words
            out.append((rec.get("title") or "", " ".join(words[:WORDS])))
    return out[:n]


def _timed(run: Callable[[], object], pairs: int) -> tuple[float, float]:
    """(median over 3 runs of the mean CPU time per article, slowest single call in wall
    time) in seconds. CPU time: on a shared machine, wall time counts other processes."""
    runs, worst = [], 0.0
    for _ in range(3):
        start = time.process_time()
        for _ in range(pairs):
            t0 = time.perf_counter()
            run()
            worst = max(worst, time.perf_counter() - t0)
        runs.append((time.process_time() - start) / pairs)
    return statistics.median(runs), worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--articles", type=int, default=200)
    args = ap.parse_args()
    rules = load_rules(load_config(REPO / "config" / "newsmon.yaml").rule_files())
    learned = Classifier(rules, Analyser())
    alone = Classifier(rules, learned.analysers, learned=None)
    arts = [Article(title=t, summary="", body=b, text_source="page", url=None)
            for t, b in texts(args.articles)]
    analysed = [learned.analyser.analyse(a) for a in arts]
    pairs = list(zip(arts, analysed, strict=True))
    learned.classify_analysed(*pairs[0])  # warm-up
    alone.classify_analysed(*pairs[0])
    n = len(pairs)

    def each(fn: Callable[[Article, Any], object]) -> Callable[[], object]:
        it = iter(pairs * 3)
        return lambda: fn(*next(it))

    analysis, analysis_worst = _timed(each(lambda a, _an: learned.analyser.analyse(a)), n)
    match, match_worst = _timed(each(alone.classify_analysed), n)
    both, both_worst = _timed(each(learned.classify_analysed), n)
    model = learned.learned_path.name if learned.learned_path else "none (rules alone)"
    print(f"pack: {len(rules.topics)} topics, {n} articles of ~{WORDS} words, learned stage: {model}")
    print(f"  analysis                  {analysis * 1e3:6.2f} ms per article "
          f"(slowest {analysis_worst * 1e3:.1f} ms)")
    print(f"  matching, rules alone     {match * 1e3:6.2f} ms (slowest {match_worst * 1e3:.1f} ms)")
    print(f"  matching + learned stage  {both * 1e3:6.2f} ms (slowest {both_worst * 1e3:.1f} ms)")
    print(f"  total: analysis + matching + learned stage {(analysis + both) * 1e3:.2f} ms "
          f"per article (budget 10 ms)")


if __name__ == "__main__":
    main()
