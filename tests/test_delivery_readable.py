"""Readable messages on every target, checked on the rendered message itself (``Renderer.message``,
what apprise is handed): one evidence sentence a line in plain text, no ``**`` markers in plain
text, no look-alike character inside Slack marks, a cut sentence never ending in part of a term.
The same through apprise to a loopback JSON webhook (a plain-text target)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.delivery.deliverer import Deliverer
from monitor.delivery.render import Renderer
from monitor.models import EvidenceSentence, PendingAlert
from tests.helpers.delivery import channel, settings
from tests.helpers.servers import Site

T0 = datetime(2025, 2, 1, 8, 0, tzinfo=UTC)
FORMATS = ["text", "markdown", "slack", "html"]


def alert(*evidence: EvidenceSentence, row_id: int = 1) -> PendingAlert:
    return PendingAlert(
        id=row_id, alert_key=f"story-5-hook-0-strikes{row_id}", channel="hook", topic="strikes",
        severity="normal", title="Overnight strikes", url="https://news.test/a", source="Wire",
        published=T0, score=3.0, threshold=1.0, evidence=evidence,
        terms=tuple(t for e in evidence for t in e.terms), created_at=T0, story_id="5")


def marked(text: str, *terms: str) -> EvidenceSentence:
    """A sentence with its terms marked as ``rules.evaluator`` marks them: ``**`` inserted around
    each occurrence in the text as it is."""
    out = text
    for term in terms:
        out = re.sub(rf"(?<!\*\*)\b{re.escape(term)}\b", f"**{term}**", out)
    return EvidenceSentence("body", text, out, terms)


def body(fmt: str, *evidence: EvidenceSentence, limit: int = 4000) -> str:
    return Renderer(fmt, body_limit=limit, title_limit=250).message([alert(*evidence)]).body  # type: ignore[arg-type]


def slack_marks(text: str) -> list[str]:
    """The marked spans of the evidence lines (the topic heading is bold by design)."""
    evidence = "\n".join(line for line in text.splitlines() if line.startswith(">"))
    return re.findall(r"\*\*(.+?)\*\*", evidence)


def test_plain_text_shows_each_sentence_on_its_own_line_without_markers() -> None:
    first = marked("Missiles hit Odesa\novernight, officials said.", "Odesa")
    second = marked("A second wave of drones\r\nreached Kharkiv by dawn.", "Kharkiv")
    text = body("text", first, second)
    quoted = [line for line in text.splitlines() if line.startswith(">")]
    assert quoted == ["> Missiles hit Odesa overnight, officials said.",
                      "> A second wave of drones reached Kharkiv by dawn."], text
    assert "**" not in text


def test_an_articles_own_asterisks_do_not_shift_the_marks() -> None:
    """The text has a literal ``**`` (a rating); only the matched term is a mark."""
    sentence = marked("The 5** hotel in Kyiv was hit by a drone", "Kyiv")
    assert sentence.marked == "The 5** hotel in **Kyiv** was hit by a drone"
    text = body("text", sentence)
    assert "> The 5** hotel in Kyiv was hit by a drone" in text  # the article's text, unmarked
    slack = body("slack", sentence)
    assert slack_marks(slack) == ["Kyiv"], slack  # not " hotel in "
    md = body("markdown", sentence)
    assert slack_marks(md) == ["Kyiv"], md


@pytest.mark.parametrize("fmt", ["slack", "markdown"])
def test_no_look_alike_inside_marks(fmt: str) -> None:
    # Cyrillic і and е in Latin words, fullwidth letters, a stand-in for * inside a term.
    spoof = marked("Drones struck Ky\u0456v and Od\u0435sa overnight", "Ky\u0456v", "Od\u0435sa")
    fullwidth = marked("Shelling near \uff2b\uff59\uff49\uff56 again", "\uff2b\uff59\uff49\uff56")
    starred = marked("The F*ck-off drone unit struck Kherson", "F*ck", "Kherson")
    shown = body(fmt, spoof, fullwidth, starred)
    marks = slack_marks(shown)
    # Only the honest words are emphasised; Markdown escapes a real * (no stand-in), Slack cannot.
    assert marks == (["Kherson"] if fmt == "slack" else ["F\\*ck", "Kherson"]), shown
    assert "Ky\u0456v" in shown and "Od\u0435sa" in shown  # the spoofs still show, unmarked
    for mark in marks:
        assert not any(ch in "\u2217\u02cb" for ch in mark)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_sentence_cut_to_fit_ends_on_a_whole_word_never_part_of_a_term(fmt: str) -> None:
    """A body limit that forces the shortest evidence steps: every evidence line shown is whole
    words of the sentence, and a term is whole or absent."""
    sentence = marked("Officials in the region said that overnight the Zaporizhzhia nuclear plant lost "
                      "external power after shelling near Enerhodar", "Zaporizhzhia", "Enerhodar")
    words = sentence.text.split()
    for limit in range(420, 640, 7):
        shown = body(fmt, sentence, limit=limit)
        lines = [re.sub(r"<[^>]+>|\*\*|^> ?", "", line).replace("\\", "")
                 for line in shown.splitlines() if "Officials" in line]
        for line in lines:
            kept = line.strip().rstrip("…").split()
            assert kept == words[:len(kept)], (limit, line)  # a prefix of whole words
            if "…" in line:
                terms = ("Zaporizhzhia", "Enerhodar")
                assert not any(t.startswith(kept[-1]) and t != kept[-1] for t in terms), (limit, line)


def test_a_json_webhook_gets_plain_text_without_markers(tmp_path: Path) -> None:
    """``json://`` resolves to plain text: apprise receives, and posts, no ``**``."""
    with Site(routes={"/hook": (200, {"Content-Type": "application/json"}, b"{}")}) as receiver:
        deliverer = Deliverer([channel(url=f"json://127.0.0.1:{receiver.port}/hook")], settings())
        target = deliverer.targets["hook"]
        assert target.renderer.fmt == "text"
        message = target.renderer.message([alert(marked("Missiles hit Odesa overnight.", "Odesa"),
                                                 marked("Drones reached Kharkiv.", "Kharkiv"))])
        assert deliverer.send_message(target, message, ["k"]).ok
        posted = next(r.json() for r in receiver.requests if r.method == "POST")
        assert "**" not in posted["message"]
        assert "> Missiles hit Odesa overnight.\n> Drones reached Kharkiv." in posted["message"]
