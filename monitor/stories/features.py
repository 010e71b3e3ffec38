"""What the story engine reads of an article: headline, lede and body terms, and a fingerprint.

An article belongs to the event of its headline and lede, so the terms of the
headline and the first sentences are counted apart from the body's and weigh
more in the article's vector. Terms are lower-case words without stop words,
with plurals and possessives folded (``missiles``/``missile's`` → ``missile``);
numbers stay (``22``, ``9,000``, ``103.5``: they tell one strike or aid package
from the next), and capitalised multi-word names in the text become one extra
term each (``n:brittney griner``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import urlsplit

from monitor.models import Article
from monitor.stories.fingerprint import (
    Fingerprint,
    fold_text,
    folded_fingerprint,
    split_folded_sentences,
    strip_dateline,
)

LEDE_SENTENCES = 2
LEDE_MAX_WORDS = 70
BODY_MAX_WORDS = 900  # the rest of a long piece is background more often than not

# A headline's trailing "| AP News", " - ABC News", " | Reuters": short segments after a separator.
_SITE_SUFFIX = re.compile(r"\s+(?:\||-|–|—|::)\s+[^|]{1,40}$")
_TOKEN = re.compile(r"[^\W_]+(?:['.,][^\W_]+)*", re.UNICODE)
_NAME = re.compile(r"\b([A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?(?:\s+[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?)+)\b")

STOP_WORDS = frozenset("""
    a about above across after again against ago all almost along already also although always am among
    an and another any anyone anything are around as at away back be became because become been before
    being below between both but by can cannot could did do does doing done down during each either else
    enough even ever every few first for from further get gets got had has have having he her here hers
    herself him himself his how however i if in including into is it its itself just last least less
    like made make many may me might more most much must my myself near never new next no nor not now of
    off often on once one only onto or other others our ours out over own per put rather really said
    same say saying says see seen several she should since so some still such than that the their theirs
    them themselves then there these they this those though through thus to told too toward towards
    under until up upon us very via was we week weeks well were what when where whether which while who
    whom whose why will with within without would year years yet you your yours mr mrs ms monday tuesday
    wednesday thursday friday saturday sunday today yesterday tonight according added adding news
    reported report reports statement
""".split())  # noqa: SIM905 - a word list reads better as text


@dataclass(frozen=True, slots=True)
class ArticleFeatures:
    """One article as the story engine sees it; built in the worker, passed to the assigner."""

    article_id: str
    headline: str  # the title without a site suffix: a story's label is one of these
    source: str  # the outlet (feed title or host), for "one story, many outlets"
    published: datetime | None
    head_terms: dict[str, int]  # headline + lede term counts
    body_terms: dict[str, int]  # the rest of the text (capped), term counts
    fingerprint: Fingerprint


def clean_headline(title: str) -> str:
    """``"Starbucks is leaving Russia | AP News"`` → ``"Starbucks is leaving Russia"``."""
    title = fold_text(title)
    stripped = _SITE_SUFFIX.sub("", title)
    # Only a short tail is a site name; a long one is part of the headline.
    return stripped if len(stripped) >= 15 else title


# Tokens repeat (a 500-word article has ~250 distinct ones, the news a vocabulary of tens of
# thousands): cached, this was a third of the feature extraction's time.
@lru_cache(maxsize=262_144)
def normalise_term(token: str) -> str | None:
    token = token.lower().strip(".,'")
    if token.endswith("'s"):
        token = token[:-2]
    if token in STOP_WORDS or (len(token) < 2 and not token.isdigit()):
        return None
    if len(token) > 4 and token.endswith("s") and not token.endswith(("ss", "us", "is")) and token.isalpha():
        token = token[:-1]
    return token


def terms(text: str) -> list[str]:
    return [term for term in map(normalise_term, _TOKEN.findall(text)) if term is not None]


def names(text: str) -> list[str]:
    """Capitalised multi-word names (``Brittney Griner``, ``Kevin McCarthy``) as ``n:`` terms."""
    found = []
    for match in _NAME.finditer(text):
        parts = [p for p in match.group(1).split() if p.lower() not in STOP_WORDS]
        if len(parts) >= 2:
            found.append("n:" + " ".join(parts).lower())
    return found


def split_lede(text: str) -> tuple[str, str]:
    """The first sentences (at most ``LEDE_MAX_WORDS`` words) and the rest of the text."""
    return _split_folded_lede(fold_text(text))


def _split_folded_lede(folded: str) -> tuple[str, str]:
    sentences = split_folded_sentences(strip_dateline(folded))
    lede: list[str] = []
    count = 0
    index = 0
    for index, sentence in enumerate(sentences):  # noqa: B007 - index is used after the loop
        size = len(sentence.split())
        if lede and (len(lede) >= LEDE_SENTENCES or count + size > LEDE_MAX_WORDS):
            break
        lede.append(sentence)
        count += size
    else:
        index = len(sentences)
    lede_text = " ".join(lede)
    if count > LEDE_MAX_WORDS:  # one very long first "sentence" (a scrape without stops)
        lede_words = lede_text.split()
        rest = lede_words[LEDE_MAX_WORDS:] + sentences[index:]
        return " ".join(lede_words[:LEDE_MAX_WORDS]), " ".join(rest)
    return lede_text, " ".join(sentences[index:])


def extract_features(article_id: str, title: str, text: str, *, source: str = "",
                     published: datetime | None = None) -> ArticleFeatures:
    headline = clean_headline(title)
    folded = fold_text(text)  # once: the lede split and the fingerprint both read the folded text
    lede, body = _split_folded_lede(folded)
    body_words = body.split()
    body = " ".join(body_words[:BODY_MAX_WORDS])
    head_source = f"{headline}. {lede}"
    # Names only from running text: title-case headlines would make every pair of words a "name".
    head_terms = Counter(terms(head_source)) + Counter(names(lede))
    body_terms = Counter(terms(body)) + Counter(names(body))
    return ArticleFeatures(article_id=article_id, headline=headline, source=source, published=published,
                           head_terms=dict(head_terms), body_terms=dict(body_terms),
                           fingerprint=folded_fingerprint(folded))


def outlet_of(url: str | None, fallback: str = "") -> str:
    """The outlet an article is from: its host without ``www.`` (else the fallback's host).

    Five feeds of one site are one outlet; the same wire copy on five sites is five.
    """
    for candidate in (url, fallback):
        if candidate:
            parts = urlsplit(candidate)
            host = (parts.hostname or "").lower().removeprefix("www.")
            if host:
                return f"{host}:{parts.port}" if parts.port else host
    return fallback


def features_from_article(article_id: str, article: Article, *, source: str = "") -> ArticleFeatures:
    """The pipeline's entry: an extracted ``Article`` (title, body or summary, feed, date)."""
    text = article.body or article.summary
    return extract_features(article_id, article.title, text, source=source or article.feed_url,
                            published=article.published)
