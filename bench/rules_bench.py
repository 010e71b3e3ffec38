"""Rule-matching cost per 1,000-word article as the number of rules grows.

Generates 10, 100, 1,000 and 10,000 topics of one multi-word term each (a
synthetic vocabulary, plus a few real phrases so that some rules fire), runs
them over real article texts (dev.jsonl, each normalised to ~1,000 words) and
prints, per size:

* newsmon: ``Classifier.classify_analysed`` — shared spaCy matchers and the
  evaluation of the topics that matched — with the analysis done beforehand
  (it is paid once per article, whatever the number of rules);
* naive: a loop of one compiled regex per rule over the raw text (timed on a
  subset of the articles for the larger sizes).

Run: ``.venv/bin/python bench/rules_bench.py [--articles N]``. Not a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.analysis.analyser import Analyser  # noqa: E402
from monitor.models import Article  # noqa: E402
from monitor.rules.classifier import Classifier  # noqa: E402
from monitor.rules.ruleset import load_rules  # noqa: E402

DEV = REPO.parent / "shared" / "eval" / "dev.jsonl"
SIZES = (10, 100, 1_000, 10_000)
WORDS = 1_000


def articles(n: int) -> list[str]:
    """Dev texts, each cut or repeated to ~1,000 words."""
    if not DEV.exists():
        sys.exit(f"{DEV} not found: the bench runs over the shared dev texts")
    texts = []
    for line in DEV.read_text(encoding="utf-8").splitlines():
        words = json.loads(line)["text"].split()
        if len(words) < 100:
            continue
        while len(words) < WORDS:
            words = words + words
        texts.append(" ".join(words[:WORDS]))
    return texts[:n]


def vocabulary(rng: random.Random, size: int = 5_000) -> list[str]:
    syll = ["ka", "zo", "rin", "tel", "mu", "vos", "pra", "len", "dor", "qui", "sa", "nev"]
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def terms(n: int, rng: random.Random, vocab: list[str], real: list[str]) -> list[str]:
    """Distinct multi-word terms; 2% are real phrases so that some rules fire."""
    out: set[str] = set()
    n_real = min(len(real), max(1, n // 50))
    out.update(rng.sample(real, n_real))
    while len(out) < n:
        out.add(" ".join(rng.sample(vocab, rng.randint(2, 3))))
    return sorted(out)


def real_phrases(texts: list[str]) -> list[str]:
    pairs = set()
    for text in texts[:20]:
        words = re.findall(r"[a-z]{5,}", text.lower())
        pairs.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    return sorted(pairs)


def build(ts: list[str], analyser: Analyser) -> tuple[Classifier, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        lines = ["topics:"]
        lines += [f"  - {{id: r{i}, terms: [{json.dumps(t)}]}}" for i, t in enumerate(ts)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        start = time.perf_counter()
        clf = Classifier(load_rules([path]), analyser)
        return clf, time.perf_counter() - start


def per_article(fn, items: list, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Median over ``repeat`` runs of the mean seconds per item."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - start) / len(items))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(7)
    texts = articles(args.articles)
    vocab = vocabulary(rng)
    real = real_phrases(texts)

    # Analysis is paid once per article, whatever the number of rules.
    base = Analyser()
    docs = [Article(title="", summary="", body=t, text_source="page", url=None) for t in texts]
    start = time.perf_counter()
    analysed = [base.analyse(a) for a in docs]
    analysis = (time.perf_counter() - start) / len(docs)
    print(f"{len(texts)} articles of ~{WORDS} words; analysis (blank en + lookup lemmas): "
          f"{analysis * 1000:.1f} ms per article, paid once\n")
    print(f"{'rules':>7} {'build s':>8} {'newsmon/article':>16} {'naive/article':>14} "
          f"{'speed-up':>9} {'fired/article':>13}")
    for n in SIZES:
        ts = terms(n, rng, vocab, real)
        clf, built = build(ts, Analyser())
        pairs = list(zip(docs, analysed, strict=True))
        fired = sum(len(clf.classify_analysed(a, an)) for a, an in pairs) / len(pairs)
        ours = per_article(lambda p, c=clf: c.classify_analysed(p[0], p[1]), pairs)
        regexes = [re.compile(r"\b" + r"\s+".join(map(re.escape, t.split())) + r"\b", re.I)
                   for t in ts]
        subset = texts[: max(3, min(len(texts), 20_000 // n))]
        naive = per_article(
            lambda text, rx=regexes: [r.search(text) for r in rx], subset,
            repeat=1 if n >= 1_000 else 3,
        )
        print(f"{n:>7,} {built:>8.2f} {ours * 1e6:>13.0f} µs {naive * 1e3:>11.2f} ms "
              f"{naive / ours:>8.0f}× {fired:>13.1f}")
    print("\nnewsmon = shared spaCy matchers + evaluation of the matched topics, per"
          " 1,000-word article, analysis excluded; naive = one re.search per rule.")


if __name__ == "__main__":
    main()
