"""Language detection on the shared sets: accuracy, ru↔uk confusion, cost; and ru/uk analysis cost.

Texts: ``train-ruuk.jsonl`` (Russian and Ukrainian, field ``lang``) + ``dev.jsonl``
(English). Slices: the full text, its first 300/100/50/30 characters, the title
alone. Detectors: the letter heuristic alone (``script_guess``), lingua alone
(low-accuracy mode, en/ru/uk + Cyrillic look-alikes) when installed, and
``detect_language`` (heuristic, lingua for what it cannot decide). None counts
as wrong. Then, per language, analysis + matching of the seed pack per 1,000
words after warm-up, and the worker memory the ru/uk analysers add.

Run: ``.venv/bin/python bench/langdetect_bench.py [--ruuk FILE] [--en FILE]``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.analysis import detect  # noqa: E402
from monitor.rules.classifier import Classifier  # noqa: E402
from monitor.rules.evaluation import article_from_record  # noqa: E402
from monitor.rules.ruleset import load_rules  # noqa: E402

EVAL = REPO.parent / "shared" / "eval"
SLICES: dict[str, Callable[[dict], str]] = {
    "full": lambda r: f"{r.get('title') or ''}\n{r['text']}",
    "300": lambda r: r["text"][:300],
    "100": lambda r: r["text"][:100],
    "50": lambda r: r["text"][:50],
    "30": lambda r: r["text"][:30],
    "title": lambda r: r.get("title") or "",
}


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(path: Path, default_lang: str) -> list[dict]:
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in recs:
        r.setdefault("lang", default_lang)
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ruuk", type=Path, default=EVAL / "train-ruuk.jsonl")
    ap.add_argument("--en", type=Path, default=EVAL / "dev.jsonl")
    ap.add_argument("--rules", type=Path, default=REPO / "config" / "rules" / "ukraine-war.yaml")
    args = ap.parse_args()
    recs = load(args.ruuk, "ru") + load(args.en, "en")
    print(f"{len(recs)} texts: " + ", ".join(
        f"{lang} {sum(r['lang'] == lang for r in recs)}" for lang in ("en", "ru", "uk")))

    before = rss_mb()
    have_lingua = detect._lingua() is not None
    lingua_mb = rss_mb() - before
    detectors: dict[str, Callable[[str], str | None]] = {
        "heuristic": lambda t: detect.script_guess(t)[0],
        "detect_language": detect.detect_language,
    }
    if have_lingua:
        detectors["lingua (low)"] = lambda t: (lambda x: None if x == "other" else x)(
            detect._statistical(t))
    print(f"lingua installed: {have_lingua} (RSS added when built: {lingua_mb:.1f} MB)")
    print(f"{'detector':<16}" + "".join(f"{s:>8}" for s in SLICES) + "  ru<->uk  None  ms/full  ms/100ch")
    for name, fn in detectors.items():
        cells, confused, nones = [], 0, 0
        timing: dict[str, float] = {}
        for slice_name, cut in SLICES.items():
            texts = [(r["lang"], cut(r)) for r in recs]
            texts = [(lang, t) for lang, t in texts if t.strip()]
            start = time.perf_counter()
            got = [fn(t) for _, t in texts]
            timing[slice_name] = (time.perf_counter() - start) / len(texts) * 1000
            right = sum(g == lang for (lang, _), g in zip(texts, got, strict=True))
            cells.append(f"{right / len(texts):8.3f}")
            confused += sum({g, lang} == {"ru", "uk"} for (lang, _), g in zip(texts, got, strict=True))
            nones += sum(g is None for g in got)
        print(f"{name:<16}" + "".join(cells) + f"  {confused:>7}  {nones:>4}"
              f"  {timing['full']:>7.3f}  {timing['100']:>8.3f}")

    # Hints: a page tagged "en" whose text is Cyrillic, a ru feed carrying Ukrainian.
    ruuk = [r for r in recs if r["lang"] in ("ru", "uk")]
    fixed = sum(detect.resolve_language("en", SLICES["full"](r)) == r["lang"] for r in ruuk)
    swapped = sum(detect.resolve_language("uk" if r["lang"] == "ru" else "ru", SLICES["full"](r))
                  == r["lang"] for r in ruuk)
    print(f"resolve_language: 'en'-tagged ru/uk full texts put right {fixed}/{len(ruuk)}; "
          f"ru/uk texts tagged with the other language put right {swapped}/{len(ruuk)}")

    # Analysis + matching cost per language, after warm-up, and the memory ru/uk add.
    clf = Classifier(load_rules(args.rules))
    en_only = 0.0
    for lang in ("en", "ru", "uk"):
        arts = [article_from_record({**r, "language": lang}) for r in recs if r["lang"] == lang]
        words = sum(len(f"{a.title} {a.body}".split()) for a in arts)
        start = time.perf_counter()
        for a in arts:
            clf.classify(a)
        cold = time.perf_counter() - start
        runs = 3
        analyse = match = 0.0
        for _ in range(runs):
            for a in arts:
                start = time.perf_counter()
                analysed = clf.analyse(a)
                middle = time.perf_counter()
                clf.classify_analysed(a, analysed)
                analyse += middle - start
                match += time.perf_counter() - middle
        per = 1e6 / words / runs  # seconds -> ms per 1,000 words
        print(f"{lang}: per 1,000 words warm: analysis {analyse * per:.2f} ms + matching "
              f"{match * per:.2f} ms; cold (first pass, empty caches) {cold * 1e6 / words:.2f} ms "
              f"({len(arts)} articles, {words} words; {clf.analysers.get(lang).describe()})")
        # The budget's unit: one 1,000-word article (texts of the language joined and cut).
        pool = " ".join(a.body for a in arts).split()
        thousand = [article_from_record({"id": n, "title": arts[n].title, "language": lang,
                                         "text": " ".join(pool[n * 1000:(n + 1) * 1000])})
                    for n in range(min(10, len(pool) // 1000))]
        for a in thousand:
            clf.classify(a)  # warm-up
        start = time.perf_counter()
        for _ in range(runs):
            for a in thousand:
                clf.analyse(a)
        one_analyse = (time.perf_counter() - start) / runs / len(thousand) * 1000
        start = time.perf_counter()
        for _ in range(runs):
            for a in thousand:
                clf.classify(a)
        one = (time.perf_counter() - start) / runs / len(thousand) * 1000
        print(f"    a 1,000-word {lang} article, warm: analysis {one_analyse:.2f} ms, "
              f"analysis + matching {one:.2f} ms ({len(thousand)} articles)")
        if lang == "en":
            en_only = rss_mb()
    print(f"RSS: the ru and uk analysers, rules and caches added {rss_mb() - en_only:.0f} MB to a "
          f"warm English worker (process {rss_mb():.0f} MB)")


if __name__ == "__main__":
    main()
