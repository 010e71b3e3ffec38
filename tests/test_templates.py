"""Message rendering: escaping per target, control characters, length limits, sandbox."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from monitor.delivery.render import Renderer, TemplateProblem, clean, md_escape, slack_escape
from monitor.models import EvidenceSentence, PendingAlert

HOSTILE = "Hi <!here> & <!channel> <@U123ABC> <http://evil.test|click me> [x](http://evil.test)"


def make_alert(**kw: object) -> PendingAlert:
    base: dict[str, object] = dict(
        id=1, alert_key="a1-ceasefire-hook", channel="hook", topic="ceasefire",
        severity="high", title="Truce agreed", url="https://news.test/story/1?a=1&b=2",
        source="Test feed", published=datetime(2024, 12, 25, 10, 0, tzinfo=UTC), score=3.5,
        threshold=2.0,
        evidence=(EvidenceSentence("body", "The ceasefire holds.", "The **ceasefire** holds.",
                                   ("ceasefire",)),),
        terms=("ceasefire",), created_at=datetime(2024, 12, 25, 10, 5, tzinfo=UTC),
    )
    base.update(kw)
    return PendingAlert(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["text", "markdown", "slack", "html"])
def test_default_alert_has_every_part(fmt: str) -> None:
    message = Renderer(fmt, body_limit=4000, title_limit=250).alert(make_alert())  # type: ignore[arg-type]
    assert message.title == "[ceasefire] Truce agreed"
    body = message.body
    for part in ("ceasefire", "high", "Test feed", "2024-12-25 10:00 UTC", "3.5",
                 "a1-ceasefire-hook"):
        assert part in body.replace("\\", ""), (part, body)
    assert "holds" in body
    link = "https://news.test/story/1?a=1&amp;b=2" if fmt == "html" else "https://news.test/story/1?a=1&b=2"
    assert link in body
    # Plain text has no emphasis: the sentence as written, no ** markers.
    marked = {"text": "> The ceasefire holds.", "markdown": "**ceasefire**", "slack": "**ceasefire**",
              "html": "<mark>ceasefire</mark>"}[fmt]
    assert marked in body
    assert fmt != "text" or "**" not in body


def test_slack_escaping_leaves_no_control_sequence() -> None:
    alert = make_alert(
        title=HOSTILE, source="<!everyone>",
        evidence=(EvidenceSentence("body", HOSTILE, f"{HOSTILE} **ceasefire**", ("ceasefire",)),))
    body = Renderer("slack", body_limit=4000, title_limit=250).alert(alert).body
    # What apprise's converter turns into Slack syntax is only an unescaped < or [.
    assert re.search(r"(?<!\\)[<\[](?!https://news\.test)", body) is None, body
    assert "\\<!here\\>" in body and "\\<@U123ABC\\>" in body
    assert "\\[x\\](http://evil.test)" in body
    assert "](<https://news.test/story/1?a=1&b=2>)" in body  # our own link is a real link


def test_markdown_and_html_escape_feed_text() -> None:
    alert = make_alert(title="t", evidence=(EvidenceSentence("body", HOSTILE, HOSTILE, ()),))
    md = Renderer("markdown", body_limit=4000, title_limit=250).alert(alert).body
    assert "\\<!here\\>" in md and "\\[x\\]" in md and "\\&" in md
    html = Renderer("html", body_limit=4000, title_limit=250).alert(alert).body
    assert "&lt;!here&gt;" in html and "<http" not in html and 'href="http://evil' not in html


def test_control_characters_and_bidi_overrides_are_stripped() -> None:
    alert = make_alert(title="Bad\x00\x1b[31mred\x07\u202eevil", source="s\x85rc")
    message = Renderer("text", body_limit=4000, title_limit=250).alert(alert)
    assert message.title == "[ceasefire] Bad[31mredevil"
    assert "\x1b" not in message.body and "\x85" not in message.body
    assert clean("a\tb\nc\x0bd") == "a\tb\ncd"


def test_mentions_are_defused_outside_html() -> None:
    assert "@everyone" not in md_escape("hi @everyone")
    assert "@here" not in slack_escape("ping @here now")
    body = Renderer("text", body_limit=4000, title_limit=250).alert(
        make_alert(source="@everyone")).body
    assert "@\u200beveryone" in body


def test_evidence_is_cut_never_the_link() -> None:
    long = " ".join(["word"] * 400)
    alert = make_alert(evidence=tuple(
        EvidenceSentence("body", long, f"**ceasefire** {long}", ("ceasefire",)) for _ in range(3)))
    for fmt in ("text", "markdown", "slack", "html"):
        renderer = Renderer(fmt, body_limit=600, title_limit=250)  # type: ignore[arg-type]
        body = renderer.alert(alert).body
        assert renderer.measure(body) <= 600, (fmt, len(body))
        assert "https://news.test/story/1" in body and "a1-ceasefire-hook" in body
        assert "ceasefire" in body  # some evidence is still there


def test_service_without_title_gets_it_in_the_body() -> None:
    message = Renderer("html", body_limit=4096, title_limit=0).alert(make_alert(title="<b>x</b>"))
    assert message.title == ""
    assert message.body.startswith("<b>[ceasefire] &lt;b&gt;x&lt;/b&gt;</b>")


def test_custom_templates_are_escaped_and_sandboxed() -> None:
    renderer = Renderer("slack", body_limit=4000, title_limit=250,
                        title_template="{{ alert.severity|upper }}: {{ alert.title }}",
                        body_template="{{ alert.title }} {{ link(alert.url) }} {{ alert.id }}")
    message = renderer.alert(make_alert(title="<!here> now"))
    assert message.title == "HIGH: <!here> now"  # titles are plain; apprise's Slack plugin escapes them
    assert message.body.startswith("\\<!here\\> now [https://news.test/")
    with pytest.raises(TemplateProblem):
        Renderer("text", body_limit=4000, title_limit=250, body_template="{{ alert.id ").alert(
            make_alert())
    sandboxed = Renderer("text", body_limit=4000, title_limit=250,
                         body_template="{{ link.__globals__ }}")
    with pytest.raises(TemplateProblem):
        sandboxed.alert(make_alert())


def test_a_too_long_custom_template_still_keeps_link_and_id() -> None:
    renderer = Renderer("text", body_limit=300, title_limit=250,
                        body_template="{% for i in range(200) %}blah {% endfor %}")
    body = renderer.alert(make_alert()).body
    assert len(body) <= 300
    assert body.endswith("https://news.test/story/1?a=1&b=2\nAlert id: a1-ceasefire-hook")


def test_digest_groups_by_topic_and_splits_whole_entries() -> None:
    alerts = [make_alert(id=i, alert_key=f"a{i}-{t}-hook", topic=t, title=f"Story {i}",
                         url=f"https://news.test/{i}")
              for i, t in enumerate(["aid", "ceasefire", "aid", "ceasefire"] * 10, 1)]
    renderer = Renderer("markdown", body_limit=1500, title_limit=250)
    parts = renderer.digest(alerts, reason="Quiet hours are over")
    assert len(parts) > 1
    seen = [a.id for _, part in parts for a in part]
    assert seen == list(range(1, 41))
    for message, part in parts:
        assert renderer.measure(message.body) <= 1500
        assert "**aid**" in message.body and "**ceasefire**" in message.body
        for alert in part:
            assert f"https://news.test/{alert.id}>" in message.body
            assert alert.alert_key.replace("-", "-") in message.body
    assert parts[0][0].title.startswith(f"[newsmon] {len(parts[0][1])} alerts (part 1 of")


RUSSIAN_SENTENCE = "Песков заявил, что Москва готова к мирным переговорам."


@pytest.mark.parametrize("fmt", ["text", "markdown", "slack", "html"])
def test_a_russian_alert_quotes_its_evidence_as_written_and_names_the_language(fmt: str) -> None:
    alert = make_alert(
        title="Кремль допустил новый раунд переговоров", source="ЛІГА.Новости", language="ru",
        evidence=(EvidenceSentence("body", RUSSIAN_SENTENCE,
                                   RUSSIAN_SENTENCE.replace("переговорам", "**переговорам**"),
                                   ("переговоры",)),))
    message = Renderer(fmt, body_limit=4000, title_limit=250).alert(alert)  # type: ignore[arg-type]
    assert message.title == "[ceasefire] Кремль допустил новый раунд переговоров"
    source_line = next(line for line in message.body.splitlines() if "Source:" in line)
    assert "ЛІГА.Новости" in source_line and "Russian (ru)" in source_line, message.body
    marked = {"html": "<mark>переговорам</mark>", "text": "переговорам"}.get(fmt, "**переговорам**")
    # markdown backslash-escapes punctuation (shown as is); the words are not touched
    assert f"Песков заявил, что Москва готова к мирным {marked}." in message.body.replace("\\", "")


@pytest.mark.parametrize(("tag", "shown"), [("uk", "Ukrainian (uk)"), ("ru-RU", "Russian (ru)"),
                                            ("de", "de")])
def test_the_source_line_names_any_language_but_english(tag: str, shown: str) -> None:
    text = Renderer("text", body_limit=4000, title_limit=250)
    assert f"Source: Test feed · {shown}\n" in text.alert(make_alert(language=tag)).body
    for english in ("en", "en-GB", None, "und"):
        assert "Source: Test feed\n" in text.alert(make_alert(language=english)).body


def test_a_digest_entry_names_the_language() -> None:
    alerts = [make_alert(id=1, language="uk"), make_alert(id=2, alert_key="a2", language="en")]
    (message, _), = Renderer("markdown", body_limit=4000, title_limit=250).digest(alerts, reason="Digest")
    ukrainian, english = [line for line in message.body.splitlines() if line.startswith("- ")]
    assert "· Test feed · Ukrainian (uk) ·" in ukrainian
    assert "Ukrainian" not in english and "(en)" not in english
