"""Workspace figures at scale: fill N synthetic articles (default 100,000), then time the
overview, story, article, search pages and the Atom feed over HTTP (p95, one client) and
print the database size per 1,000 articles.

The fill is fast because it skips the network and the analysis, not the storage: each
article goes through ``ItemRepository.record_item`` (article, FTS row, matches, outbox
rows, item) and its story through ``StoryRepository``, a thousand per transaction with
``synchronous=OFF`` (the daemon commits each item with ``FULL``; the rows are the same).
The stored clock is moved 5 minutes per article, so the 100,000 span a year.

The text is Zipfian (an 8,000-word vocabulary, s ≈ 1.1, with 60 news words placed
at ranks 40–4,000), so a two-word query matches a few per cent of the articles, as in a
real archive; ``search-common`` queries the commonest word (nearly every article) — the
worst case.

    .venv/bin/python bench/web_bench.py                    # 100,000 articles
    .venv/bin/python bench/web_bench.py --articles 20000 --rounds 60
    .venv/bin/python bench/web_bench.py --keep /tmp/bench.db   # keep the database
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.identity import item_planner
from monitor.ingest.parse import canonical_url, content_hash
from monitor.models import Article, EvidenceSentence, FeedItem, ProcessedArticle, TermHit, TopicMatch
from monitor.records import StoryArticleRecord, StoryRecord
from monitor.storage import open_storage
from monitor.storage.stories import StoryRepository

_NEWS_TEXT = (
    "ceasefire talks peace deal kremlin kyiv sanctions grain corridor drone strike energy grid"
    " parliament election minister border refugees aid negotiators truce front shelling brussels"
    " summit tariff market inflation weather football museum festival pipeline gas oil nuclear"
    " reactor missile airport harbour treaty ambassador embassy protest court verdict budget"
    " minister coalition opposition ballot referendum bank currency export import wheat"
    " fertiliser hospital evacuation")
NEWS_WORDS = tuple(_NEWS_TEXT.split(" "))
TOPICS = ("ceasefire", "negotiation", "sanctions", "energy")
CHANNEL = "desk"


class Corpus:
    """A deterministic Zipfian vocabulary and text generator."""

    def __init__(self, seed: int = 7, size: int = 8000, s: float = 1.1) -> None:
        rng = random.Random(seed)
        syllables = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < size:
            word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
            if word not in seen:
                seen.add(word)
                words.append(word)
        news = list(dict.fromkeys(NEWS_WORDS))
        for n, word in enumerate(news):  # spread over ranks 40..4000
            words[40 + int(n * (3960 / len(news)))] = word
        self.words = words
        self.weights = list(itertools.accumulate(1 / (r + 1) ** s for r in range(size)))
        self.news = news
        self.rng = rng

    def sentence(self, n: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.weights, k=n)).capitalize() + "."

    def body(self) -> str:
        return "\n\n".join(" ".join(self.sentence(self.rng.randint(12, 28))
                                    for _ in range(self.rng.randint(2, 4)))
                           for _ in range(self.rng.randint(4, 9)))


def fill(path: Path, count: int, seed: int = 7) -> tuple[float, int]:
    """Fill ``path``; returns (seconds, stories)."""
    import monitor.storage.items as items_module

    corpus = Corpus(seed)
    rng = random.Random(seed + 1)
    store = open_storage(path)
    store.feeds.sync([("https://bench.example/rss", "bench", [])])
    feed = store.feeds.get("https://bench.example/rss")
    assert feed is not None
    stories = StoryRepository(store.connection)
    base = datetime.now(UTC) - timedelta(minutes=5 * count)
    clock = {"now": base}
    real_utcnow = items_module.utcnow
    items_module.utcnow = lambda: clock["now"]  # the stored clock: 5 minutes per article
    store.db.execute("PRAGMA synchronous=OFF")
    started = time.perf_counter()
    story_no, story_members, story_left = 0, [], 0
    try:
        for start in range(0, count, 1000):
            with store.connection.write():
                for n in range(start, min(count, start + 1000)):
                    clock["now"] = base + timedelta(minutes=5 * n)
                    if story_left == 0:
                        if story_members:
                            _save_story(stories, story_no, story_members)
                        story_no, story_members = story_no + 1, []
                        story_left = rng.choice((1, 1, 1, 2, 2, 3, 4, 6, 9))
                    story_left -= 1
                    key = _record(store, feed.id, n, corpus, rng, clock["now"])
                    story_members.append((key, clock["now"], corpus.sentence(9)))
                    stories._add_article(StoryArticleRecord(
                        article_id=key, story_id=str(story_no), event_time=clock["now"],
                        headline=story_members[0][2], source="bench", vector={"w": 1.0}, exact="x",
                        sample=b"", words=300, wire_credit=False,
                        near_dup_of=story_members[0][0] if len(story_members) > 1 else None,
                        similarity=0.9), ())
            if story_members:
                with store.connection.write():
                    _save_story(stories, story_no, story_members)
        with store.connection.write():  # the outbox rows become the stories' (as per-story routing does)
            store.db.execute(
                "UPDATE alerts SET story_id = (SELECT sa.story_id FROM articles ar JOIN story_articles sa"
                " ON sa.article_key = ar.dedup_key WHERE ar.id = alerts.article_id)")
    finally:
        items_module.utcnow = real_utcnow
    elapsed = time.perf_counter() - started
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return elapsed, story_no


def _record(store: Any, feed_id: int, n: int, corpus: Corpus, rng: random.Random, now: datetime) -> str:
    link = f"https://bench.example/a/{n}"
    title = corpus.sentence(9)
    item = FeedItem(guid=link, link=link, canonical_url=canonical_url(link), title=title,
                    summary=corpus.sentence(24), published=now, content_hash=content_hash(title, str(n)))
    article = Article(title=title, summary=item.summary, body=corpus.body(), text_source="page", url=link)
    matches = tuple(TopicMatch(
        topic=t, score=round(rng.uniform(3.0, 9.0), 1), threshold=3.0, severity="high",
        hits=(TermHit(term="ceasefire*", text="ceasefire", field="body", sentence=1, weight=2.0),),
        evidence=(EvidenceSentence("body", "A ceasefire was agreed.", "A **ceasefire** was agreed.",
                                   ("ceasefire",)),))
        for t in TOPICS if rng.random() < 0.03)
    key = f"url:{link}"
    store.items.record_item(feed_id, "bench", ProcessedArticle(item=item, article=article, matches=matches),
                            article_key=key, plan=item_planner(matches, lambda m: (CHANNEL,)))
    return key


def _save_story(stories: StoryRepository, number: int, members: list[tuple[str, datetime, str]]) -> None:
    stories._save_story(StoryRecord(
        story_id=str(number), label=members[0][2], label_article_id=members[0][0],
        first_seen=members[0][1], last_seen=members[-1][1], member_ids=tuple(m[0] for m in members),
        outlets=("bench",), centroid={"w": 1.0}, centroid_norm=1.0))


async def time_pages(path: Path, article_count: int, story_count: int, rounds: int,
                     corpus: Corpus) -> dict[str, list[float]]:
    import aiohttp

    from monitor.config import Config
    from monitor.web import WebSettings, serve

    config = Config.model_validate({"database": str(path), "rules": [
        str(Path(__file__).resolve().parent.parent / "config" / "rules")]})
    url_box: list[str] = []
    ready = asyncio.Event()

    def on_ready(url: str) -> None:
        url_box.append(url.rstrip("/"))
        ready.set()

    task = asyncio.create_task(serve(config, WebSettings(port=0), on_ready))
    await ready.wait()
    base = url_box[0]
    rng = random.Random(3)
    news = corpus.news
    common = corpus.words[0]
    pages = {
        "overview": lambda: "/",
        "story": lambda: f"/story/{rng.randint(max(1, story_count - 2000), story_count)}",
        "article": lambda: f"/article/{rng.randint(1, article_count)}",
        "search": lambda: f"/search?q={rng.choice(news)}+{rng.choice(news)}",
        "search-1word": lambda: f"/search?q={rng.choice(news)}",
        "search-topic": lambda: f"/search?q={rng.choice(news)}&topic={rng.choice(TOPICS)}",
        "search-common": lambda: f"/search?q={common}",
        "atom": lambda: "/feeds/all.atom",
    }
    times: dict[str, list[float]] = {name: [] for name in pages}
    async with aiohttp.ClientSession() as session:
        for make in pages.values():  # warm each page once (templates, caches)
            async with session.get(base + make()) as response:
                await response.read()
        for _ in range(rounds):
            for name, make in pages.items():
                target = make()
                start = time.perf_counter()
                async with session.get(base + target) as response:
                    await response.read()
                    assert response.status == 200, (target, response.status)
                times[name].append((time.perf_counter() - start) * 1000)
    task.cancel()
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="fill this file (kept) instead of a temp one")
    parser.add_argument("--reuse", action="store_true", help="time an already filled --keep database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        if args.reuse:
            import sqlite3

            db = sqlite3.connect(path)
            stories = int(db.execute("SELECT COUNT(*) FROM stories").fetchone()[0])
            db.close()
        else:
            elapsed, stories = fill(path, args.articles)
            print(f"filled {args.articles:,} articles ({stories:,} stories) through record_item in"
                  f" {elapsed:.1f} s ({elapsed / args.articles * 1000:.2f} ms each, 1,000 a transaction)")
        size = path.stat().st_size
        print(f"database: {size / 1e6:.1f} MB = {size / args.articles * 1000 / 1e6:.2f} MB per 1,000"
              f" articles ({size / args.articles / 1024:.1f} KiB each, FTS index included)")
        times = asyncio.run(time_pages(path, args.articles, stories, args.rounds, Corpus()))
        for name, values in times.items():
            print(f"{name:>14}: p95 {p95(values):6.1f} ms  median {statistics.median(values):6.1f} ms"
                  f"  ({len(values)} requests)")


if __name__ == "__main__":
    main()
