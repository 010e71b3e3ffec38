"""Real Russian and Ukrainian feeds through the whole pipeline to a delivered alert.

Each fixture feed in ``../shared/fixtures/feeds`` is served from a loopback site
as its publisher served it (windows-1251 from oren.ru, UTF-8 from UNIAN and
LIGA.net, the latter without an XML declaration). None of their real items is
about the seed pack's topics, so a copy of each gets one self-written item in the
feed's own encoding. Then ``newsmon once`` (``run_once``): fetch, parse, detect the
language, analyse, match with the real rules, record, deliver to a ``json://``
receiver. Article pages are not fetched (the fixtures have none): the feed text is
what is matched.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitor.runtime.assembly import run_once
from tests.helpers.configs import ConfigFactory
from tests.helpers.paths import shared_path
from tests.helpers.servers import Site

MOJIBAKE = ("\ufffd", "Ð", "Ñ", "Ã", "вЂ", "Р°", "СЃ")  # replacement char, UTF-8 read as 1252/1251


@dataclass(frozen=True)
class RealFeed:
    file: str
    encoding: str  # the feed's bytes; the added item is written in the same one
    language: str  # what every article must be recognised as
    items: int  # in the fixture as published
    known_title: str  # one real item's title, to check the decoding
    topic: str  # the topic the added item is about
    title: str  # the added item
    description: str


FEEDS = (
    RealFeed(
        "oren_ru_windows1251__node-feedparser.xml", "windows-1251", "ru", 10,
        "В Бузулуке главные стройплощадки – детсад и Ледовый дворец",
        "negotiation", "В Кремле допустили новый раунд переговоров с Киевом",
        "Песков заявил, что Москва готова к переговорам с Украиной при посредничестве Турции. "
        "Зеленский ответил, что обсуждать мирный план без вывода российских войск нельзя."),
    RealFeed(
        "unian_ua_ukrainian_2020__data-import.xml", "utf-8", "uk", 50,
        "Завтра Україну накриють дощі, температура на заході впаде до +14°",
        "ceasefire", "Сторони погодили режим тиші на Донбасі",
        "Тристороння контактна група домовилася про повне припинення вогню з понеділка. "
        "ЗСУ повідомили, що російські окупанти порушили перемир'я вже за кілька годин."),
    RealFeed(
        "liga_net_russian_2021__whats_about_bot.xml", "utf-8", "ru", 12,
        "Залужный: ВСУ должны готовиться к наступлению для освобождения оккупированных территорий",
        "aid", "США объявили о новом пакете военной помощи Украине",
        "Пентагон передаст ВСУ гаубицы, снаряды и ракеты для ПВО на 800 млн долларов. "
        "В Киеве поблагодарили Вашингтон за военную помощь."),
)


def _with_item(raw: bytes, feed: RealFeed, link: str) -> bytes:
    """The fixture's bytes with one more item, written in the feed's own encoding."""
    item = (f"<item><title>{feed.title}</title><link>{link}</link><guid>{link}</guid>"
            f"<description>{feed.description}</description></item>\n").encode(feed.encoding)
    assert raw.count(b"</channel>") == 1
    return raw.replace(b"</channel>", item + b"</channel>")


def _query(config_db: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(config_db)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("feed", FEEDS, ids=[f.file.split("__")[0] for f in FEEDS])
def test_a_real_cyrillic_feed_reaches_an_alert_in_its_language(
        feed: RealFeed, tmp_path: Path, make_config: ConfigFactory, site: Site, receiver: Site) -> None:
    raw = shared_path("fixtures", "feeds", feed.file).read_bytes()
    assert feed.title.encode(feed.encoding) not in raw  # the added item is new
    link = site.url("/story/added")
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"}, _with_item(raw, feed, link))
    config = make_config.load(
        database="ruuk.db", feeds=[site.url("/feed.xml")],
        channels=[{"name": "desk", "url": f"json://127.0.0.1:{receiver.port}/hook", "rate_limit": 0}],
        fetch={"fetch_articles": False})

    cycle, delivery = asyncio.run(run_once(config))

    (outcome,) = cycle.outcomes
    assert outcome.ok and outcome.new_items == feed.items + 1, outcome
    articles = _query(config.database_path(), "SELECT title, summary, language, url FROM articles")
    assert len(articles) == feed.items + 1
    titles = {title for title, *_ in articles}
    assert feed.known_title in titles and feed.title in titles  # decoded, not mojibake
    for title, summary, language, _ in articles:
        text = f"{title} {summary}"
        assert not any(bad in text for bad in MOJIBAKE), text
        assert language == feed.language, (title, language)
    matched = _query(config.database_path(), "SELECT a.url, m.topic FROM matches m"
                     " JOIN articles a ON a.id = m.article_id")
    assert (link, feed.topic) in matched, matched

    assert delivery.sent >= 1 and not delivery.errors, delivery
    messages = [r.json() for r in receiver.requests if r.path == "/hook"]
    ours = [m for m in messages if feed.title in m["title"] and f"[{feed.topic}]" in m["title"]]
    assert len(ours) == 1, [m["title"] for m in messages]
    body = ours[0]["message"]
    name = {"ru": "Russian (ru)", "uk": "Ukrainian (uk)"}[feed.language]
    assert name in next(line for line in body.splitlines() if "Source:" in line), body
    # The evidence is quoted as written: one of the item's own sentences, word for word
    # (the matched terms are set in ** marks).
    quoted = [line.lstrip("> ").replace("**", "") for line in body.splitlines() if line.startswith(">")]
    sentences = [s.strip() for s in feed.description.replace(". ", ".\n").splitlines()]
    assert quoted and all(q in [*sentences, feed.title] for q in quoted), (quoted, sentences)


@pytest.mark.parametrize(("language", "text"), [
    ("ru", "В 2022 г. переговоры, т.е. встречи делегаций, шли в Стамбуле. Переговоры (т.е. раунды) "
           "продолжились: «Мы готовы к переговорам», — сказал Песков."),
    ("uk", "У 2022 р. перемовини, тобто зустрічі делегацій, тривали в Стамбулі. Сторони погодили "
           "перемир'я на Донбасі: «Ми готові до переговорів», — заявив Зеленський."),
])
def test_caching_the_tokenizer_chunks_leaves_the_tokens_as_they_were(language: str, text: str) -> None:
    """The analyser tokenizes each new chunk alone once so spaCy caches it (a special
    case such as "т.е." otherwise stops the caching for the rest of a text): same tokens."""
    from monitor.analysis.analyser import Analysers

    primed = Analysers.default().get(language)
    plain = Analysers.default().get(language)
    plain._prime_tokenizer = lambda texts: None  # type: ignore[method-assign]
    for _ in range(2):  # the second pass reads the cache
        ours, theirs = (a.analyse_fields("", "", text).fields[0] for a in (primed, plain))
        assert [(t.text, t.whitespace_, t.lemma_, t.is_sent_start) for t in ours.doc] == \
               [(t.text, t.whitespace_, t.lemma_, t.is_sent_start) for t in theirs.doc]
    assert "т.е." in primed._primed or "тобто" in primed._primed
