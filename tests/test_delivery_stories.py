"""One message per story per channel: grouping at delivery, per-story messages on every target,
story digests, and readable evidence (one sentence a line, no marks where they do not belong)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.delivery.deliverer import Deliverer
from monitor.delivery.pacing import Due, message_groups, plan_channel
from monitor.delivery.render import Renderer, marked_evidence
from monitor.identity import StoryContext, article_key, item_planner
from monitor.models import Article, EvidenceSentence, FeedItem, PendingAlert, ProcessedArticle, TopicMatch
from monitor.storage import Storage, open_storage
from tests.helpers.delivery import channel, settings
from tests.helpers.servers import Site

FORMATS = ["text", "markdown", "slack", "html"]
T0 = datetime(2024, 12, 25, 10, 0, tzinfo=UTC)
TITLE = "Kremlin: no grounds for talks; freeze along the front line floated"
CEASEFIRE = EvidenceSentence("body", "A freeze of the front line was floated as a first step.",
                             "A **freeze** of the front line was floated as a first step.", ("freeze",))
TALKS = EvidenceSentence("body", "Peskov said there were no grounds for talks with Kyiv.",
                         "Peskov said there were no grounds for **talks** with Kyiv.", ("talks",))


def story_row(row_id: int, topic: str, evidence: tuple[EvidenceSentence, ...], *, story: str = "12",
              number: int = 0, channel_name: str = "hook", note: str = "", title: str = TITLE,
              severity: str = "normal", published: datetime = T0) -> PendingAlert:
    return PendingAlert(
        id=row_id, alert_key=f"story-{story}-{channel_name}-{number}-{topic}", channel=channel_name,
        topic=topic,
        severity=severity, title=title, url=f"https://news.test/{story}/{number}", source="Wire",
        published=published, score=3.0, threshold=1.0, evidence=evidence,
        terms=tuple(t for e in evidence for t in e.terms), created_at=published, body=note, story_id=story)


def two_topics(**kw: object) -> list[PendingAlert]:
    return [story_row(1, "ceasefire", (CEASEFIRE,), **kw),  # type: ignore[arg-type]
            story_row(2, "negotiation", (TALKS,), **kw)]  # type: ignore[arg-type]


# --- grouping -------------------------------------------------------------------------------


def test_rows_of_one_story_follow_up_and_channel_are_one_message() -> None:
    rows = [*two_topics(), story_row(3, "ceasefire", (CEASEFIRE,), number=1),
            story_row(4, "ceasefire", (CEASEFIRE,), story="13"),
            story_row(5, "ceasefire", (CEASEFIRE,), channel_name="mail")]
    plain = PendingAlert(id=6, alert_key="a9-ceasefire-hook", channel="hook", topic="ceasefire",
                         severity="normal", title="t", url=None, source="s", published=T0, score=1,
                         threshold=1, evidence=(), terms=(), created_at=T0)
    groups = message_groups([*rows, plain])
    # the story's first alert (both topics); its follow-up; another story; another channel; a plain row
    assert [[a.id for a in g] for g in groups] == [[1, 2], [3], [4], [5], [6]]


def test_a_story_message_is_one_unit_for_the_throttle_and_the_backlog_rule() -> None:
    others = [story_row(10 + i, "ceasefire", (CEASEFIRE,), story=str(20 + i)) for i in range(2)]
    rows = [*two_topics(), *others]
    plan = plan_channel(channel(throttle=2), [Due(a) for a in rows], now=T0 + timedelta(minutes=1),
                        settings=settings())
    assert [[a.id for a in m] for m in plan.messages] == [[1, 2], [10]]
    assert set(plan.hold) == {11}  # the third message waits; the story's two rows went together
    backlog = plan_channel(channel(), [Due(a) for a in rows], now=T0, settings=settings(collapse_over=2))
    assert backlog.messages == [] and [a.id for a in backlog.digest] == [1, 2, 10, 11]


# --- one message, every target --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_story_message_names_every_topic_with_its_evidence(fmt: str) -> None:
    note = "follow-up: new topic: negotiation; now reported by 6 outlets"
    message = Renderer(fmt, body_limit=4000, title_limit=250).message(two_topics(note=note))  # type: ignore[arg-type]
    assert message.title == f"[ceasefire · negotiation] {TITLE}"
    body = message.body.replace("\\", "")
    assert "Follow-up: new topic: negotiation; now reported by 6 outlets" in body
    sections = body.split("6 outlets", 1)[1]  # each topic, then its evidence
    assert sections.index("ceasefire") < sections.index("freeze") < sections.index("negotiation") \
        < sections.index("talks")
    assert "story-12-hook-0-ceasefire" in body and "story-12-hook-0-negotiation" in body
    assert body.count("https://news.test/12/0") == (2 if fmt in ("html", "markdown", "slack") else 1)
    if fmt == "text":
        assert "**" not in body
        assert "> A freeze of the front line was floated as a first step.\n" in body
        assert "> Peskov said there were no grounds for talks with Kyiv.\n" in body


def test_a_story_message_fits_the_service_limit_keeping_link_and_ids() -> None:
    long = EvidenceSentence("body", "word " * 150, "**word** " * 150, ("word",))
    rows = [story_row(i, f"topic{i}", (long, long, long)) for i in range(1, 4)]
    renderer = Renderer("slack", body_limit=900, title_limit=250)
    body = renderer.message(rows).body
    assert renderer.measure(body) <= 900
    assert "https://news.test/12/0" in body and all(a.alert_key in body for a in rows)


# --- readable evidence ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("limit", range(20, 75, 3))
def test_a_cut_sentence_never_ends_in_a_fragment_of_a_term(fmt: str, limit: int) -> None:
    sentence = EvidenceSentence("body", "Officials said the Zaporizhzhia ceasefire holds today",
                                "Officials said the **Zaporizhzhia** **ceasefire** holds today", ())
    shown = str(marked_evidence(sentence, fmt, limit))
    plain = re.sub(r"<[^>]+>|\*\*", "", shown)
    words = plain.rstrip("…").split()
    assert all(word in sentence.text.split() for word in words), (limit, shown)  # whole words only
    assert shown.count("**") % 2 == 0 and shown.count("<mark>") == shown.count("</mark>")


def test_plain_text_has_no_marks_and_slack_marks_only_words() -> None:
    sentence = EvidenceSentence("body", "Prices rose 5* in Kyiv", "Prices rose 5**\\*** in ** Kyiv**", ())
    text = str(marked_evidence(sentence, "text", 200))
    assert "**" not in text
    slack = str(marked_evidence(
        EvidenceSentence("body", "a * b `c` Kyiv", "a ***** b **`** ** Kyiv ** end", ()), "slack", 200))
    assert "**\u2217**" not in slack and "**\u02cb**" not in slack  # no look-alike alone in marks
    spans = re.findall(r"\*\*(.*?)\*\*", slack)
    assert spans == ["Kyiv"], slack  # marks open and close on a letter, never on a space


# --- digests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_digest_lists_each_story_once_newest_first_with_why(fmt: str) -> None:
    old = [story_row(1, "ceasefire", (CEASEFIRE,), story="7", title="Old story", published=T0),
           story_row(2, "negotiation", (TALKS,), story="7", title="Old story", published=T0),
           story_row(3, "negotiation", (TALKS,), story="7", number=1, title="Old story, later",
                     note="follow-up: new in the evidence: 300", published=T0 + timedelta(hours=2))]
    new = [story_row(4, "ceasefire", (CEASEFIRE,), story="8", title="New story",
                     published=T0 + timedelta(hours=5))]
    (message, carried), = Renderer(fmt, body_limit=8000, title_limit=250).digest(  # type: ignore[arg-type]
        [*old, *new], reason="Backlog after a delay")
    assert sorted(a.id for a in carried) == [1, 2, 3, 4]
    body = message.body
    assert body.count("New story") == 1 and body.count("Old story") == 1  # once each: the newest article
    assert body.index("New story") < body.index("Old story, later")
    assert "Follow-up: new in the evidence: 300" in body.replace("\\", "")
    assert "Matched ceasefire (3.0 / 1.0)" in body.replace("\\", "")
    assert "2 alerts" in message.title + body


# --- through the real outbox and a webhook ------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Storage]:
    s = open_storage(tmp_path / "outbox.db")
    yield s
    s.close()


def record_story_item(store: Storage, n: int, topics: list[tuple[str, EvidenceSentence]],
                      story: StoryContext, *, title: str = TITLE,
                      published: datetime = T0) -> tuple[int, ...]:
    url = f"https://news.test/{n}"
    item = FeedItem(guid=f"g{n}", link=url, canonical_url=url, title=title, summary="s", published=published,
                    content_hash=f"h{n}")
    article = Article(title=title, summary="s", body="b", text_source="summary", url=url,
                      feed_url="http://feeds.test/a.xml", published=published)
    matches = tuple(TopicMatch(topic=t, score=3.0, threshold=1.0, evidence=(e,)) for t, e in topics)
    feed_id = store.feeds.get("http://feeds.test/a.xml").id
    result = store.items.record_item(
        feed_id, "Wire", ProcessedArticle(item=item, article=article, matches=matches),
        article_key=article_key(item), plan=item_planner(matches, lambda m: ["hook"], story=story))
    return result.alert_ids


def test_a_story_with_two_topics_is_one_webhook_message_marked_sent_together(store: Storage) -> None:
    with Site(routes={"/hook": (200, {"Content-Type": "application/json"}, b"{}")}) as receiver:
        ids = record_story_item(store, 1, [("ceasefire", CEASEFIRE), ("negotiation", TALKS)],
                                StoryContext("12", outlets=1))
        other = record_story_item(store, 2, [("ceasefire", CEASEFIRE)], StoryContext("13", outlets=1))
        rows = {r["id"]: r for r in store.db.query("SELECT * FROM alerts")}
        assert {rows[i]["story_id"] for i in ids} == {"12"} and rows[other[0]]["story_id"] == "13"
        deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook")], settings())
        report = deliverer.deliver_due(store.outbox)
        assert (report.messages, report.sent) == (2, 3)
        bodies = [r.json() for r in receiver.requests if r.method == "POST"]
        assert [b["title"] for b in bodies] == [f"[ceasefire · negotiation] {TITLE}", f"[ceasefire] {TITLE}"]
        assert "**" not in bodies[0]["message"]
        rows = {r["id"]: r for r in store.db.query("SELECT * FROM alerts")}
        assert {rows[i]["status"] for i in ids} == {"sent"}
        assert len({rows[i]["delivery_id"] for i in ids}) == 1  # one message carried both rows
        assert deliverer.deliver_due(store.outbox).messages == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_collapsed_backlog_lists_stories_newest_first_across_topics(fmt: str) -> None:
    """The backlog rule's digest: each story once, newest first over all topics (not grouped by
    topic, which would put an old ceasefire story above a newer negotiation one), each with a
    one-line why that carries its evidence."""
    rows = [story_row(1, "ceasefire", (CEASEFIRE,), story="1", title="Oldest ceasefire story", published=T0),
            story_row(2, "negotiation", (TALKS,), story="2", title="Middle talks story",
                      published=T0 + timedelta(hours=1)),
            story_row(3, "ceasefire", (CEASEFIRE,), story="3", title="Newest ceasefire story",
                      published=T0 + timedelta(hours=2)),
            story_row(4, "ceasefire", (CEASEFIRE,), story="2", title="Middle talks story",
                      published=T0 + timedelta(hours=1))]
    plan = plan_channel(channel(), [Due(a) for a in rows], now=T0 + timedelta(hours=3),
                        settings=settings(collapse_over=2))
    assert plan.messages == [] and sorted(a.id for a in plan.digest) == [1, 2, 3, 4]
    (message, _), = Renderer(fmt, body_limit=8000, title_limit=250).digest(  # type: ignore[arg-type]
        plan.digest, reason="Backlog after a delay")
    body = message.body.replace("\\", "")
    titles = ["Newest ceasefire story", "Middle talks story", "Oldest ceasefire story"]
    assert [body.count(t) for t in titles] == [1, 1, 1], body
    positions = [body.index(t) for t in titles]
    assert positions == sorted(positions), body  # newest first, whatever the topic
    assert "3 alerts" in message.title + body  # three stories, not four rows
    why = [line for line in body.splitlines() if "Matched" in line]
    assert len(why) == 3, body  # one why line per story
    assert "A freeze of the front line was floated" in why[0]  # the why shows its evidence
    if fmt == "text":
        assert "**" not in body


def test_a_full_claim_never_splits_a_story_message(store: Storage) -> None:
    """A run claims at most ``claim_limit`` rows; when the limit falls inside a story's message
    (one of its two topics claimed), that message waits for the next run and goes out whole."""
    with Site(routes={"/hook": (200, {"Content-Type": "application/json"}, b"{}")}) as receiver:
        for n in range(3):
            record_story_item(store, n, [("ceasefire", CEASEFIRE), ("negotiation", TALKS)],
                              StoryContext(str(40 + n), outlets=1))
        deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook")], settings())
        deliverer.claim_limit = 3  # a claim of 3 rows ends inside the second story
        deliverer.deliver_due(store.outbox)
        # The deferred row is free again (another process may deliver it), not left claimed.
        assert [r["claimed_by"] for r in store.db.query(
            "SELECT claimed_by FROM alerts WHERE story_id = '41'")] == [None, None]
        for _ in range(3):
            deliverer.deliver_due(store.outbox)
        messages = [r.json()["message"] for r in receiver.requests if r.method == "POST"]
        keys = [set(re.findall(r"story-\d+-hook-0-\w+", m)) for m in messages]
        assert keys == [{f"story-{40 + n}-hook-0-ceasefire", f"story-{40 + n}-hook-0-negotiation"}
                        for n in range(3)], keys  # each story once, all its topics together
        assert store.outbox.counts().get("pending", 0) == 0


def test_a_large_backlog_arrives_as_a_digest_of_each_story_once_newest_first(store: Storage) -> None:
    """30 stories (two topics each, 60 rows) due at once on a webhook: over ``collapse_over``,
    so one digest, as received: each story once, newest first, each with its why line."""
    with Site(routes={"/hook": (200, {"Content-Type": "application/json"}, b"{}")}) as receiver:
        for n in range(30):  # stored oldest first; story n published n hours after T0, topics alternate
            topics = [("ceasefire", CEASEFIRE), ("negotiation", TALKS)]
            record_story_item(store, n, topics[::-1] if n % 2 else topics,
                              StoryContext(str(100 + n), outlets=1), title=f"Story number {n:02d} headline",
                              published=T0 + timedelta(hours=n))
        deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook")],
                              settings(collapse_over=10))
        report = deliverer.deliver_due(store.outbox)
        assert report.sent == 60, report
        text = "\n".join(r.json()["message"] for r in receiver.requests if r.method == "POST")
        shown = re.findall(r"Story number (\d\d) headline", text)
        assert shown == [f"{n:02d}" for n in range(29, -1, -1)], shown  # once each, newest first
        assert text.count("Matched ") == 30
        assert "**" not in text
