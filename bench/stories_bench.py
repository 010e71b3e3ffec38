"""Cost of story assignment as the store grows: 1,000, 10,000 and 100,000 stored articles.

    .venv/bin/python bench/stories_bench.py [--sizes 1000,10000,100000] [--per-day 2000]
    .venv/bin/python bench/stories_bench.py --memory | --sqlite | --fingerprints

Default: the daemon's story step per new article (``StoryKeeper`` on a real SQLite file) at
each store size. The store is built the way it would look after weeks of running, quickly:

* the history outside the assignment window (``size`` less two windows' worth) is written
  straight into the tables with bulk inserts: story articles, stories (three articles each),
  articles, matches, one sent alert a story, and the document frequencies of their terms
  (``story_terms``: the IDF at 100,000 stored is the IDF of 100,000 documents);
* the window (two windows: ``4 × per-day`` articles, what the pruned index holds) is assigned
  through the keeper, from generated article texts.

Texts are synthetic but shaped like news (no downloads, nothing copied): a Zipf vocabulary of
pseudo-words with English function words between them, plurals and possessives, capitalised
two-word names and places, numbers (``9,000``, ``103.5``), a headline with a ``| Outlet``
suffix, a two-sentence lede heavy in the event's words, some wire datelines (``KYIV, Ukraine
(AP) —``) and wire copies republished under new headlines (near-duplicates). Then 300 probes
a size are timed: feature extraction (the worker's part), ``assign`` (IDF prefetch and the
assigner), the write-through of its rows, and ``context`` (the story's alerts, the burst
rates of the story and a topic). Medians and 95th percentiles in ms.

``--memory``: the assigner alone on ``InMemoryStoryIndex`` (no storage), the store filled
through it with features built directly. ``--sqlite``: the memory window against every read
a query (``StoredStoryIndex``), filled through the assigner (slow past 10,000: use
``--sizes 1000,10000``). ``--fingerprints``: the consistent shingle sample against MinHash.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from monitor.storage.stories import _ARTICLE_COLUMNS, _STORY_COLUMNS
from monitor.stories.clustering import InMemoryStoryIndex, InMemoryTermStatistics, StoryAssigner
from monitor.stories.features import STOP_WORDS, ArticleFeatures, extract_features, normalise_term
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
_SYLLABLES = ("ka", "ro", "mi", "tel", "van", "dor", "sen", "lu", "pra", "gor", "nik", "sha", "ber", "tos",
              "lin", "mar", "vel", "zan", "qui", "ost", "len", "dra", "fe", "hol", "mun", "bar", "ric", "sta",
              "ve", "pol")
_FUNCTION = sorted(w for w in STOP_WORDS if w.isalpha() and len(w) <= 7)[:120]
_DATELINES = ("KYIV, Ukraine (AP) — ", "LONDON (Reuters) - ", "MOSCOW (AP) — ", "BRUSSELS (AFP) — ")


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def _pseudo_words(count: int, rng: random.Random) -> list[str]:
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))), None)
    return list(seen)


class Generator:
    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        ranks = np.arange(1, VOCABULARY + 1)
        self.weights = (1.0 / ranks) / (1.0 / ranks).sum()
        self.numpy = np.random.default_rng(seed)
        self.words = _pseudo_words(VOCABULARY, self.random)
        self.people = [w.capitalize() for w in _pseudo_words(3000, self.random)]
        self.serial = 0
        self._pool: list[str] = []
        self._cursor = 0

    def background(self, count: int) -> list[str]:
        if self._cursor + count > len(self._pool):
            picks = self.numpy.choice(VOCABULARY, size=500_000, p=self.weights)
            self._pool = [self.words[i] for i in picks]
            self._cursor = 0
        begin = self._cursor
        self._cursor += count
        return self._pool[begin:begin + count]

    def event(self) -> list[str]:
        """An event: eight rarer words, a person, a place and a number of its own."""
        rare = self.numpy.integers(VOCABULARY // 4, VOCABULARY, size=8)
        person = f"{self.random.choice(self.people)} {self.random.choice(self.people)}"
        place = self.random.choice(self.people) + "sk"
        number = self.random.choice([str(self.random.randrange(10, 999)),
                                     f"{self.random.randrange(1, 99)},{self.random.randrange(100, 999)}",
                                     f"{self.random.randrange(1, 300)}.{self.random.randrange(1, 9)}"])
        return [self.words[i] for i in rare] + [person, place, number]

    # -- texts ---------------------------------------------------------------------------------

    def _sentence(self, event: list[str], heat: float) -> str:
        rng = self.random
        out: list[str] = []
        filler = iter(self.background(30))
        for _ in range(rng.randint(12, 26)):
            roll = rng.random()
            if roll < 0.42:
                out.append(rng.choice(_FUNCTION))
            elif roll < 0.42 + heat:
                out.append(rng.choice(event))
            elif roll < 0.47 + heat:
                out.append(f"{rng.choice(self.people)} {rng.choice(self.people)}")
            elif roll < 0.49 + heat:
                out.append(str(rng.randrange(2, 2000)))
            else:
                word = next(filler)
                tail = rng.random()
                out.append(word + "s" if tail < 0.12 else word + "'s" if tail < 0.15 else word)
        sentence = " ".join(out)
        if rng.random() < 0.15:
            return f'"{sentence[:1].upper()}{sentence[1:]}," {rng.choice(self.people)} said.'
        return sentence[:1].upper() + sentence[1:] + "."

    def article(self, event: list[str]) -> tuple[str, str]:
        """A headline with an outlet suffix and a 350-700-word text about ``event``."""
        rng = self.random
        head = [*rng.sample(event[:8], 4), event[8].split()[1], event[9], *self.background(3)]
        rng.shuffle(head)
        title = " ".join(head).capitalize() + f" | Outlet {rng.randrange(200)}"
        lede = [self._sentence(event, 0.30) for _ in range(2)]
        body = [self._sentence(event, 0.06) for _ in range(rng.randint(18, 34))]
        dateline = rng.choice(_DATELINES) if rng.random() < 0.2 else ""
        return title, dateline + " ".join(lede + body)

    def features(self, event: list[str], when: datetime, source: str) -> ArticleFeatures:
        """Features built directly, no text (``--memory`` and ``--sqlite`` fill their stores so)."""
        self.serial += 1
        head = event[:6] + self.background(10)
        body = event + self.background(250)
        sample = np.unique(self.numpy.integers(0, 2**62, size=70, dtype=np.uint64))
        fp = Fingerprint(exact=f"x{self.serial}", sample=sample, words=300)
        return ArticleFeatures(article_id=f"a{self.serial}", headline=" ".join(head[:8]), source=source,
                               published=when, head_terms=_counts(head), body_terms=_counts(body),
                               fingerprint=fp)

    def text(self, event: list[str]) -> tuple[str, str]:
        return self.article(event)

    def history_frequencies(self, count: int, terms_each: int = 260) -> dict[str, int]:
        """Document frequencies of ``count`` articles' terms (what the history would have counted),
        drawn in bulk from the same Zipf vocabulary: per article its distinct words."""
        normal = [normalise_term(w) for w in self.words]
        df = np.zeros(VOCABULARY, dtype=np.int64)
        for begin in range(0, count, 2000):
            rows = min(2000, count - begin)
            picks = self.numpy.choice(VOCABULARY, size=(rows, terms_each), p=self.weights)
            picks.sort(axis=1)
            distinct = np.ones_like(picks, dtype=bool)
            distinct[:, 1:] = picks[:, 1:] != picks[:, :-1]
            df += np.bincount(picks[distinct], minlength=VOCABULARY)
            rare = self.numpy.integers(VOCABULARY // 4, VOCABULARY, size=rows * 8)
            df += np.bincount(rare, minlength=VOCABULARY)
        out: dict[str, int] = {}
        for index in np.nonzero(df)[0]:
            term = normal[index]
            if term is not None:
                out[term] = out.get(term, 0) + int(df[index])
        return out


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


def _fill_history(storage: object, generator: Generator, count: int, before: datetime,
                  per_day: int) -> None:
    """``count`` stored articles (three to a story) dated before ``before``, written straight into
    the tables with bulk inserts (story_articles, stories, articles, matches, one sent alert a
    story, the document frequencies of their terms): what a long-running store holds outside the
    assignment window, without assigning each one."""
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
    frequencies = generator.history_frequencies(count) if count else {}
    with storage.connection.write():  # type: ignore[attr-defined]
        db.executemany(f"INSERT INTO story_articles ({_ARTICLE_COLUMNS}) VALUES ({','.join('?' * 18)})",
                       articles)
        db.executemany(f"INSERT INTO stories ({_STORY_COLUMNS}, size) VALUES ({','.join('?' * 10)})", stories)
        db.executemany("INSERT INTO articles (id, dedup_key, first_seen) VALUES (?,?,?)", rows)
        db.executemany("INSERT INTO matches (id, article_id, topic, created_at) VALUES (?,?,?,?)", matches)
        db.executemany("INSERT INTO alerts (alert_key, match_id, article_id, channel, topic, status,"
                       " story_id, created_at) VALUES (?,?,?,'hook','ceasefire','sent',?,?)", alerts)
        db.executemany("INSERT INTO story_terms (term, df) VALUES (?, ?)", frequencies.items())
        db.execute("INSERT INTO story_counters (name, value) VALUES ('stories', ?)", (count // 3 + 1,))
        db.execute("INSERT INTO story_counters (name, value) VALUES ('documents', ?)", (count,))


class Stream:
    """Articles in date order: events live a while (new ones keep coming), some texts are wire
    copies of an earlier article under a new headline (trimmed or whole)."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.events: list[list[str]] = []
        self.texts: list[str] = []  # recent texts, for republication
        self.serial = 0

    def next(self, *, fresh: bool | None = None) -> tuple[str, str, str]:
        """(article id, title, text)."""
        g, rng = self.generator, self.generator.random
        if fresh is None:
            fresh = not self.events or rng.random() < 0.4
        if fresh:
            self.events.append(g.event())
            del self.events[:-50]  # events stay "live" for a while, then new ones take over
        event = self.events[-1] if fresh else rng.choice(self.events[-20:])
        title, text = g.article(event)
        if self.texts and rng.random() < 0.15:  # a wire copy, maybe cut after some sentences
            copied = rng.choice(self.texts[-200:])
            text = copied if rng.random() < 0.5 else copied[: max(len(copied) // 2, 400)]
        self.texts.append(text)
        del self.texts[:-400]
        self.serial += 1
        return f"p{self.serial}", title, text


def _spread(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{statistics.median(ms):5.2f} / {ms[int(len(ms) * 0.95)]:<5.2f}"


def run_keeper(sizes: list[int], per_day: int, folder: Path) -> None:
    """The daemon's story step per new article at each store size: features from the text (the
    worker's part), ``StoryKeeper`` assign (IDF prefetch + assigner), the write-through of its
    rows, and ``context`` (the story's alerts, the burst rates)."""
    from monitor.runtime.stories import StoryKeeper
    from monitor.storage import open_storage
    from monitor.storage.stories import StoryRepository
    from monitor.stories.bursts import BurstPolicy

    window_population = per_day * 4  # two windows: what the pruned index holds
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step = timedelta(days=1) / per_day
    print(f"keeper on SQLite ({folder}): {per_day} articles a day, window 2 days (the index holds"
          f" {window_population:,}); {PROBES} probes a size; ms median / p95")
    print(f"{'stored':>8} {'window':>7} {'build s':>8} {'features':>13} {'assign':>13} {'write':>13}"
          f" {'context':>13} {'assign+write+context':>21} {'db MiB':>7}", flush=True)

    for size in sizes:
        generator = Generator()
        stream = Stream(generator)
        path = folder / f"keeper-{size}.db"
        storage = open_storage(path)
        built = time.perf_counter()
        recent = min(size, window_population)
        history_end = start + step * (size - recent)
        _fill_history(storage, generator, size - recent, history_end, per_day)
        now = history_end
        keeper = StoryKeeper(StoryRepository(storage.connection), clock=lambda: now,  # noqa: B023
                             bursts=BurstPolicy())
        for n in range(recent):
            now = history_end + step * n
            key, title, text = stream.next()
            keeper.assign_features(extract_features(key, title, text, source=f"outlet{n % 200}",
                                                    published=now), now=now)
        built = time.perf_counter() - built
        timings: dict[str, list[float]] = {"features": [], "assign": [], "write": [], "context": []}
        for probe in range(PROBES):
            key, title, text = stream.next(fresh=probe % 2 == 0)  # half new events, half known ones
            began = time.perf_counter()
            features = extract_features(key, title, text, source="probe", published=now)
            extracted = time.perf_counter()
            # StoryKeeper.assign_features, step by step: IDF prefetch + assign, then the write-through.
            keeper.statistics.prefetch([*features.head_terms, *features.body_terms])
            assignment = keeper.assigner.assign(features, now)
            assigned = time.perf_counter()
            keeper.index.flush(assignment)
            written = time.perf_counter()
            keeper.context(assignment, ("ceasefire",))
            timings["features"].append(extracted - began)
            timings["assign"].append(assigned - extracted)
            timings["write"].append(written - assigned)
            timings["context"].append(time.perf_counter() - written)
        total = [a + w + c for a, w, c in zip(timings["assign"], timings["write"], timings["context"],
                                              strict=True)]
        print(f"{size:>8,} {len(keeper.index):>7,} {built:>8.1f} {_spread(timings['features']):>13}"
              f" {_spread(timings['assign']):>13} {_spread(timings['write']):>13}"
              f" {_spread(timings['context']):>13} {_spread(total):>21} {path.stat().st_size / 2**20:>7.1f}",
              flush=True)
        storage.close()


def compare_fingerprints() -> None:
    generator = Generator(seed=11)
    texts = [generator.text(generator.event())[1][:6000] for _ in range(200)]  # ~900 words each
    tokens = [words(t) for t in texts]
    for text in texts:  # warm the token-hash cache, as a running process has it
        fingerprint(text)
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
    print(f"\nfingerprints ({statistics.mean(len(t) for t in tokens):.0f}-word texts):")
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
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--memory", action="store_true", help="the assigner alone, in memory")
    modes.add_argument("--sqlite", action="store_true", help="memory window against every read a query")
    modes.add_argument("--fingerprints", action="store_true", help="shingle sample against MinHash")
    args = parser.parse_args(argv[1:])
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.fingerprints:
        compare_fingerprints()
        return 0
    if args.memory:
        run(sizes, args.per_day)
        return 0
    runner: Callable[[list[int], int, Path], None] = run_sqlite if args.sqlite else run_keeper
    with tempfile.TemporaryDirectory() as folder:
        runner(sizes, args.per_day, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
