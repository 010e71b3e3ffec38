"""Cost of story assignment as the store grows: 1,000, 10,000 and 100,000 stored articles.

    .venv/bin/python bench/stories_bench.py [--sizes 1000,10000,100000] [--per-day 2000]

Synthetic articles (no downloads): a Zipf vocabulary of 40,000 words, events of
1-5 articles each with their own distinctive words, names and numbers, arriving
at ``--per-day`` articles a day in date order. The store is filled through the
assigner itself (so stories exist); the index forgets articles older than twice
the window, as the daemon would. At each size, 300 probe articles are timed:
``assign()`` alone (features given) and feature extraction from text (a constant
per article: it does not depend on the store). Memory is the process RSS.

``--sqlite``: the same with the state in SQLite (``storage/stories.py``), the store
filled through the daemon's configuration (``WindowStoryIndex``: the window in
memory, every change written through); at each size the probes are timed three
ways: the window in memory (assign, then the write of its rows), every read a
query (``StoredStoryIndex``), and the start-up rebuild of the window.

``--keeper``: the daemon's whole story step per new article (``StoryKeeper``: assign, write
through, then the context: the story's alerts and the burst rates of the story and a topic).
The history outside the window is written straight into the tables (three articles a story,
each with its article, match and the story's alert); the window (two windows' worth) is
assigned through the keeper; then 300 probes are timed.

Also compares fingerprints: the consistent shingle sample used here, a numpy
MinHash (128 permutations), and ``datasketch.MinHash`` when it is installed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from monitor.storage.stories import _ARTICLE_COLUMNS, _STORY_COLUMNS
from monitor.stories.clustering import InMemoryStoryIndex, InMemoryTermStatistics, StoryAssigner
from monitor.stories.features import ArticleFeatures, extract_features
from monitor.stories.fingerprint import (
    Fingerprint,
    fingerprint,
    minhash_signature,
    sample_shingles,
    shingle_hashes,
    words,
)

VOCABULARY = 40_000
PROBES = 300


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


class Generator:
    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        ranks = np.arange(1, VOCABULARY + 1)
        self.weights = (1.0 / ranks) / (1.0 / ranks).sum()
        self.numpy = np.random.default_rng(seed)
        self.words = [f"w{i}" for i in range(VOCABULARY)]
        self.serial = 0

    def background(self, count: int) -> list[str]:
        if not hasattr(self, "_pool"):
            picks = self.numpy.choice(VOCABULARY, size=2_000_000, p=self.weights)
            self._pool = [self.words[i] for i in picks]
        begin = self.random.randrange(len(self._pool) - count)
        return self._pool[begin:begin + count]

    def event(self) -> list[str]:
        rare = self.numpy.integers(VOCABULARY // 4, VOCABULARY, size=8)
        return [self.words[i] for i in rare] + [f"n:name{self.random.randrange(5000)} person",
                                                 str(self.random.randrange(10, 5000))]

    def features(self, event: list[str], when: datetime, source: str) -> ArticleFeatures:
        """Features built directly (the store's filler): what extract_features would produce."""
        self.serial += 1
        head = event[:6] + self.background(10)
        body = event + self.background(250)
        sample = np.unique(self.numpy.integers(0, 2**62, size=70, dtype=np.uint64))
        fp = Fingerprint(exact=f"x{self.serial}", sample=sample, words=300)
        return ArticleFeatures(article_id=f"a{self.serial}", headline=" ".join(head[:8]), source=source,
                               published=when, head_terms=_counts(head), body_terms=_counts(body),
                               fingerprint=fp)

    def text(self, event: list[str]) -> tuple[str, str]:
        """A synthetic title and ~300-word text, for timing feature extraction."""
        title = " ".join(self.random.sample(event[:8], 5) + self.background(4)).capitalize()
        sentences = []
        for _ in range(20):
            chunk = self.background(12) + self.random.sample(event[:8], 2)
            self.random.shuffle(chunk)
            sentences.append(" ".join(chunk).capitalize() + ".")
        return title, " ".join(sentences)


def _counts(tokens: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    return counts


def run(sizes: list[int], per_day: int) -> None:
    generator = Generator()
    index = InMemoryStoryIndex()
    assigner = StoryAssigner(index, InMemoryTermStatistics())
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(days=1) / per_day
    stored = 0
    now = start
    events: list[list[str]] = []
    base_rss = rss_mib()
    print(f"{per_day} articles a day; window {assigner.config.window.days} days; probes {PROBES} a size")
    print(f"{'stored':>8} {'in index':>9} {'assign ms (median / p95)':>26} {'extract ms':>11} {'RSS MiB':>8}")

    def add_one() -> None:
        nonlocal stored, now
        if not events or generator.random.random() < 0.4:
            events.append(generator.event())
            del events[:-50]  # events stay "live" for a while, then new ones take over
        event = generator.random.choice(events[-20:])
        now = start + step * stored
        assigner.assign(generator.features(event, now, f"outlet{generator.random.randrange(200)}"), now=now)
        stored += 1
        if stored % 1000 == 0:
            index.prune(now - 2 * assigner.config.window)

    for size in sizes:
        while stored < size:
            add_one()
        assign_times = []
        extract_times = []
        for _ in range(PROBES):
            known = generator.random.random() < 0.5
            event = generator.random.choice(events[-20:]) if known else generator.event()
            title, text = generator.text(event)
            began = time.perf_counter()
            features = extract_features(f"p{stored}", title, text, source="probe", published=now)
            extract_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            assigner.assign(features, now=now)
            assign_times.append(time.perf_counter() - began)
            stored += 1
        assign_ms = sorted(t * 1000 for t in assign_times)
        p95 = assign_ms[int(len(assign_ms) * 0.95)]
        print(f"{size:>8,} {len(index):>9,} {statistics.median(assign_ms):>13.3f} / {p95:<10.3f} "
              f"{statistics.median(extract_times) * 1000:>11.3f} {rss_mib() - base_rss:>8.1f}")


def run_sqlite(sizes: list[int], per_day: int, folder: Path) -> None:
    from monitor.storage import open_storage
    from monitor.storage.stories import StoryRepository
    from monitor.stories.stored import StoredStoryIndex, StoredTermStatistics, WindowStoryIndex, window_start

    generator = Generator()
    storage = open_storage(folder / "stories-bench.db")
    repository = StoryRepository(storage.connection)
    window = WindowStoryIndex(repository)
    window_stats = StoredTermStatistics(repository)
    window_stats.bind(window.pending)
    assigner = StoryAssigner(window, window_stats)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(days=1) / per_day
    stored = 0
    now = start
    events: list[list[str]] = []
    print(f"SQLite ({folder}): {per_day} articles a day; probes {PROBES} a size; times in ms (median / p95)")
    print(f"{'stored':>8} {'window':>7} {'memory: assign':>16} {'+ write':>14} {'SQL: assign':>16} "
          f"{'+ write':>14} {'rebuild s':>10} {'db MiB':>7}")

    def one(index: WindowStoryIndex | StoredStoryIndex, stats: StoredTermStatistics, sink: StoryAssigner,
            features: ArticleFeatures, moment: datetime) -> tuple[float, float]:
        began = time.perf_counter()
        stats.prefetch([*features.head_terms, *features.body_terms])
        result = sink.assign(features, now=moment)
        assigned = time.perf_counter()
        index.flush(result)
        return assigned - began, time.perf_counter() - assigned

    def spread(values: list[float]) -> str:
        ms = sorted(v * 1000 for v in values)
        return f"{statistics.median(ms):6.2f} / {ms[int(len(ms) * 0.95)]:<6.2f}"

    for size in sizes:
        while stored < size:
            if not events or generator.random.random() < 0.4:
                events.append(generator.event())
                del events[:-50]
            now = start + step * stored
            features = generator.features(generator.random.choice(events[-20:]), now,
                                          f"outlet{generator.random.randrange(200)}")
            one(window, window_stats, assigner, features, now)
            stored += 1
            if stored % 1000 == 0:
                window.prune(window_start(now, assigner.config.window))
        sql_index = StoredStoryIndex(repository)
        sql_stats = StoredTermStatistics(repository)
        sql_stats.bind(sql_index.pending)
        sql_assigner = StoryAssigner(sql_index, sql_stats)
        timings: dict[str, list[float]] = {"memory": [], "memory write": [], "sql": [], "sql write": []}
        for probe in range(PROBES):
            known = generator.random.random() < 0.5
            event = generator.random.choice(events[-20:]) if known else generator.event()
            features = generator.features(event, now, "probe")
            use_sql = probe % 2 == 1
            index, stats, sink = ((sql_index, sql_stats, sql_assigner) if use_sql
                                  else (window, window_stats, assigner))
            assign_s, write_s = one(index, stats, sink, features, now)
            if use_sql:  # the memory window must hear of the SQL probe's article too
                stored_row = repository.article(features.article_id)
                if stored_row is not None:
                    from monitor.stories.stored import article_from_record
                    story_row = repository.story(stored_row.story_id)
                    if story_row is not None:
                        from monitor.stories.stored import story_from_record
                        InMemoryStoryIndex.save_story(window, story_from_record(story_row))
                    InMemoryStoryIndex.add_article(window, article_from_record(stored_row), ())
            key = "sql" if use_sql else "memory"
            timings[key].append(assign_s)
            timings[key + " write"].append(write_s)
            stored += 1
        began = time.perf_counter()
        rebuilt = WindowStoryIndex(repository)
        rebuilt.load(window_start(now, assigner.config.window))
        rebuild_s = time.perf_counter() - began
        db_mib = (folder / "stories-bench.db").stat().st_size / 2**20
        columns = [spread(timings[k]) for k in ("memory", "memory write", "sql", "sql write")]
        print(f"{size:>8,} {len(window):>7,} {columns[0]:>16} {columns[1]:>14} {columns[2]:>16} "
              f"{columns[3]:>14} {rebuild_s:>10.2f} {db_mib:>7.1f}", flush=True)
    storage.close()


def _fill_history(storage: object, count: int, before: datetime, per_day: int) -> None:
    """``count`` stored articles (three to a story) dated before ``before``, written straight
    into the tables (story_articles, stories, articles, matches, one sent alert per story): what
    a long-running store holds outside the assignment window, without assigning each one."""
    import json

    from monitor.records import iso

    db = storage.db.conn  # type: ignore[attr-defined]
    step = timedelta(days=1) / per_day
    articles, stories, rows, matches, alerts = [], [], [], [], []
    for n in range(count):
        when = before - step * (count - n)
        key, story = f"h{n}", f"{n // 3 + 1}"
        articles.append((key, story, when.timestamp(), f"headline {n}", f"outlet{n % 200}", "{}", f"x{n}",
                         b"", 300, 0, int(n % 3 == 0), 0.5, None, None, 0, 1, 0, n % 3 + 1))
        rows.append((n + 1, key, iso(when)))
        matches.append((n + 1, n + 1, "ceasefire", iso(when)))
        if n % 3 == 0:
            alerts.append((f"story-{story}-hook-0-ceasefire", n + 1, n + 1, story, iso(when)))
        if n % 3 == 2 or n == count - 1:
            members = [f"h{m}" for m in range(n - n % 3, n + 1)]
            stories.append((story, f"headline {n}", members[0], when.timestamp() - 1, when.timestamp(),
                            json.dumps(members), json.dumps([f"outlet{n % 200}"]), "{}", 1.0, len(members)))
    with storage.connection.write():  # type: ignore[attr-defined]
        db.executemany(f"INSERT INTO story_articles ({_ARTICLE_COLUMNS}) VALUES ({','.join('?' * 18)})",
                       articles)
        db.executemany(f"INSERT INTO stories ({_STORY_COLUMNS}, size) VALUES ({','.join('?' * 10)})", stories)
        db.executemany("INSERT INTO articles (id, dedup_key, first_seen) VALUES (?,?,?)", rows)
        db.executemany("INSERT INTO matches (id, article_id, topic, created_at) VALUES (?,?,?,?)", matches)
        db.executemany("INSERT INTO alerts (alert_key, match_id, article_id, channel, topic, status,"
                       " story_id, created_at) VALUES (?,?,?,'hook','ceasefire','sent',?,?)", alerts)
        db.execute("INSERT INTO story_counters (name, value) VALUES ('stories', ?)", (count // 3 + 1,))


def run_keeper(sizes: list[int], per_day: int, folder: Path) -> None:
    """The daemon's whole story step per new article at each store size: ``StoryKeeper.assign_features``
    (IDF prefetch, assign, write-through) and ``context`` (the story's alerts, the burst rates)."""
    from monitor.runtime.stories import StoryKeeper
    from monitor.storage import open_storage
    from monitor.storage.stories import StoryRepository
    from monitor.stories.bursts import BurstPolicy

    generator = Generator()
    window_population = per_day * 4  # two windows: what the pruned index holds
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(days=1) / per_day
    print(f"keeper (SQLite, {folder}): {per_day} articles a day; probes {PROBES} a size; ms (median / p95)")
    print(f"{'stored':>8} {'window':>7} {'assign':>14} {'write':>14} {'context':>14} {'total':>14}"
          f" {'db MiB':>7}")

    def spread(values: list[float]) -> str:
        ms = sorted(v * 1000 for v in values)
        return f"{statistics.median(ms):5.2f} / {ms[int(len(ms) * 0.95)]:<5.2f}"

    for size in sizes:
        path = folder / f"keeper-{size}.db"
        storage = open_storage(path)
        recent = min(size, window_population)
        history_end = start + step * (size - recent)
        _fill_history(storage, size - recent, history_end, per_day)
        now = history_end
        keeper = StoryKeeper(StoryRepository(storage.connection), clock=lambda: now,  # noqa: B023
                             bursts=BurstPolicy())
        events: list[list[str]] = []
        for n in range(recent):
            if not events or generator.random.random() < 0.4:
                events.append(generator.event())
                del events[:-50]
            now = history_end + step * n
            keeper.assign_features(generator.features(generator.random.choice(events[-20:]), now,
                                                      f"outlet{generator.random.randrange(200)}"), now=now)
        timings: dict[str, list[float]] = {"assign": [], "write": [], "context": []}
        for _ in range(PROBES):
            known = generator.random.random() < 0.5
            event = generator.random.choice(events[-20:]) if known else generator.event()
            features = generator.features(event, now, "probe")
            # StoryKeeper.assign_features, step by step: IDF prefetch + assign, then the write-through.
            began = time.perf_counter()
            keeper.statistics.prefetch([*features.head_terms, *features.body_terms])
            assignment = keeper.assigner.assign(features, now)
            assigned = time.perf_counter()
            keeper.index.flush(assignment)
            written = time.perf_counter()
            keeper.context(assignment, ("ceasefire",))
            timings["assign"].append(assigned - began)
            timings["write"].append(written - assigned)
            timings["context"].append(time.perf_counter() - written)
        total = [sum(parts) for parts in zip(*timings.values(), strict=True)]
        print(f"{size:>8,} {len(keeper.index):>7,} {spread(timings['assign']):>14}"
              f" {spread(timings['write']):>14}"
              f" {spread(timings['context']):>14} {spread(total):>14} {path.stat().st_size / 2**20:>7.1f}",
              flush=True)
        storage.close()


def compare_fingerprints() -> None:
    generator = Generator(seed=11)
    texts = [generator.text(generator.event())[1] * 3 for _ in range(200)]  # ~900 words each
    tokens = [words(t) for t in texts]
    began = time.perf_counter()
    for text in texts:
        fingerprint(text)
    sample_ms = (time.perf_counter() - began) / len(texts) * 1000
    hashes = [shingle_hashes(t) for t in tokens]
    began = time.perf_counter()
    for h in hashes:
        minhash_signature(h)
    minhash_ms = (time.perf_counter() - began) / len(texts) * 1000
    sample_bytes = statistics.mean(sample_shingles(h).nbytes for h in hashes)
    print("\nfingerprints (900-word texts):")
    print(f"  consistent shingle sample (1/4): {sample_ms:.2f} ms an article (whole fingerprint), "
          f"{sample_bytes:.0f} bytes")
    print(f"  numpy MinHash 128: +{minhash_ms:.2f} ms on top of shingling, 1024 bytes")
    try:
        from datasketch import MinHash  # type: ignore[import-not-found]
    except ImportError:
        print("  datasketch: not installed (it pulls in scipy, ~140 MB; see docs/stories.md)")
        return
    began = time.perf_counter()
    for toks in tokens:
        signature = MinHash(num_perm=128)
        signature.update_batch(" ".join(toks[i:i + 5]).encode() for i in range(len(toks) - 4))
    print(f"  datasketch MinHash 128: {(time.perf_counter() - began) / len(texts) * 1000:.2f} ms an article")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--sqlite", action="store_true", help="the state in SQLite (storage/stories.py)")
    parser.add_argument("--keeper", action="store_true",
                        help="the daemon's whole story step (assign, write, alerts and burst reads)")
    args = parser.parse_args(argv[1:])
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.keeper:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            run_keeper(sizes, args.per_day, Path(folder))
        return 0
    if args.sqlite:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            run_sqlite(sizes, args.per_day, Path(folder))
        return 0
    run(sizes, args.per_day)
    compare_fingerprints()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
