"""Alert and digest messages: Jinja2 templates, escaped per target, within limits.

Every value that came from a feed is untrusted. It is cleaned of control
characters here, then escaped for the target's format by the template
environment itself (so a user's own template is safe too):

- ``html`` (email, Telegram): HTML autoescape.
- ``markdown``: CommonMark backslash escapes.
- ``slack``: CommonMark that apprise's Slack plugin turns into mrkdwn; ``<``,
  ``>``, ``[``, ``]`` are escaped so that ``<!here>``, ``<!channel>``,
  ``<@U123>`` and ``<url|label>`` in feed text arrive as literal text.
- ``text``: as is (minus control characters).

``@everyone``/``@here``/``@channel`` get a zero-width space after the ``@`` in
all but HTML, so chat services that ping on bare words (Discord) do not.

Templates run in Jinja2's ``SandboxedEnvironment``: a template from the config
cannot reach Python internals. A message never exceeds the service's length:
the evidence is cut first (fewer and shorter sentences), never the link.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from monitor.analysis.languages import SUPPORTED, primary_language
from monitor.config import SEVERITY_RANK
from monitor.errors import TemplateProblem as TemplateProblem
from monitor.models import EvidenceSentence, PendingAlert

Format = Literal["text", "markdown", "slack", "html"]

# C0 (but tab and newline), DEL, C1, and the bidirectional overrides that can
# make a message read differently from what it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"@(everyone|here|channel)\b", re.I)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>~&])")
_MD_LINE_START = re.compile(r"^(\s*(?:\d+)?)([#+\-=.)])(?=\s|$)", re.M)
_SLACK_SPECIAL = re.compile(r"([\\<>\[\]])")
_ZWSP = "\u200b"

EVIDENCE_STEPS = ((3, 400, 10), (3, 200, 10), (2, 150, 6), (1, 120, 4), (1, 60, 3), (0, 0, 0))


def clean(text: object, *, one_line: bool = False) -> str:
    """Feed text without control characters (and on one line when asked)."""
    value = _CONTROL.sub("", unicodedata.normalize("NFC", str(text or "")))
    if one_line:
        value = " ".join(value.split())
    return value


def defuse_mentions(text: str) -> str:
    return _MENTION.sub(lambda m: "@" + _ZWSP + m.group(1), text)


def md_escape(text: str) -> str:
    """CommonMark: inline markup characters backslash-escaped, and the ones that
    only count at the start of a line (headings, lists) when they are there."""
    text = _MD_SPECIAL.sub(r"\\\1", defuse_mentions(text))
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def slack_escape(text: str) -> str:
    """CommonMark for apprise's CommonMark→mrkdwn converter.

    The converter turns ``\\<``/``\\>`` into ``&lt;``/``&gt;`` and ``&`` into
    ``&amp;``, and emits ``\\[``/``\\]`` as plain brackets (no link can form).
    ``*`` and backticks would start emphasis or code spans across our own
    markup, and Slack shows a backslash escape literally, so they become
    look-alikes (∗, ˋ).
    """
    text = defuse_mentions(text).replace("*", "\u2217").replace("`", "\u02cb")
    return _SLACK_SPECIAL.sub(r"\\\1", text)


_ESCAPERS: dict[str, Callable[[str], str]] = {
    "text": defuse_mentions, "markdown": md_escape, "slack": slack_escape,
    "html": lambda s: str(escape(s)),
}


def safe_url(url: str | None) -> str | None:
    """An http(s) URL with the characters that break link syntax percent-encoded."""
    url = clean(url, one_line=True)
    if not re.match(r"^https?://", url, re.I):
        return None
    return quote(url, safe=":/?#@!$&'()*+,;=%~[]")


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str


def _bold(fmt: str) -> Callable[[Any], Markup]:
    def bold(value: Any) -> Markup:
        text = value if isinstance(value, Markup) else _ESCAPERS[fmt](clean(value))
        if fmt == "html":
            return Markup(f"<b>{text}</b>")
        if fmt in ("markdown", "slack"):
            return Markup(f"**{text}**")
        return Markup(text)
    return bold


def _link(fmt: str) -> Callable[..., Markup]:
    def link(url: str | None, label: Any = None) -> Markup:
        target = safe_url(url)
        shown = clean(label if label is not None else url, one_line=True)
        if target is None:
            return Markup(_ESCAPERS[fmt](shown))
        if fmt == "html":
            # The URL is also the visible text: the plain-text part made from
            # this HTML (email) then still carries the link.
            return Markup('<a href="{0}">{1}</a>').format(target, shown if label else target)
        if fmt in ("markdown", "slack"):
            return Markup(f"[{_ESCAPERS[fmt](shown)}](<{target}>)")
        return Markup(target if label is None else f"{defuse_mentions(shown)} {target}")
    return link


def _environment(fmt: str) -> SandboxedEnvironment:
    escaper = _ESCAPERS[fmt]

    def finalize(value: Any) -> Any:
        # Applied to every {{ }} output: what a template did not mark safe is escaped.
        if value is None:
            return ""
        if isinstance(value, Markup) or fmt == "html":
            return value  # html: Jinja's autoescape does it
        return escaper(str(value))

    env = SandboxedEnvironment(
        autoescape=fmt == "html", finalize=finalize, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=False, undefined=StrictUndefined,
    )
    env.globals.update(link=_link(fmt), bold=_bold(fmt))
    return env


def _template_source(name: str) -> str:
    return resources.files("monitor.delivery").joinpath("templates", name).read_text(encoding="utf-8")


def _short(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with …"""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ""
    cut = text[: limit - 1]
    # Mid-word: back to the last space (in the second half, so that a long word still shows).
    if text[limit - 1] != " " and " " in cut[limit // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


_LOOKALIKE_EDGE = "\u2217\u02cb"  # slack_escape's stand-ins for * and `


def _split_marks(marked: str, text: str | None = None) -> list[tuple[str, bool]]:
    """``marked`` as (piece, is_term) pieces. With the sentence's own ``text``, a ``**`` is a marker
    only where ``marked`` has it and ``text`` has not (``rules.evaluator`` inserts the markers into
    the text as it is, so an article's own ``**`` stays literal and cannot shift the pairs);
    without it (or when the two do not align), ``**`` pairs, an unpaired last one literal."""
    if text is not None:
        aligned = _aligned_marks(marked, text)
        if aligned is not None:
            return aligned
    parts = marked.split("**")
    if len(parts) % 2 == 0:  # an odd number of markers: the last one is the sentence's own
        parts = [*parts[:-2], parts[-2] + "**" + parts[-1]]
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


def _aligned_marks(marked: str, text: str) -> list[tuple[str, bool]] | None:
    pieces: list[tuple[str, bool]] = []
    current: list[str] = []
    in_term = False
    i = j = 0
    while j < len(marked):
        if marked.startswith("**", j) and not text.startswith("**", i):
            if current:
                pieces.append(("".join(current), in_term))
                current = []
            in_term = not in_term
            j += 2
        elif i < len(text) and marked[j] == text[i]:
            current.append(marked[j])
            i += 1
            j += 1
        else:
            return None
    if i != len(text) or in_term:  # not the same sentence, or a marker left open
        return None
    if current:
        pieces.append(("".join(current), False))
    return pieces


_CONFUSABLE_SCRIPTS = frozenset(("LATIN", "CYRILLIC", "GREEK"))


def _confusable(text: str) -> bool:
    """A word that mixes Latin, Cyrillic and Greek letters (``Kyіv`` with a Ukrainian і), or a
    letter that is a compatibility look-alike (fullwidth ``Ｋ``, mathematical ``𝐊``): emphasis
    would lend such a spoof weight, so it is shown unmarked."""
    for word in text.split():
        letters = [ch for ch in word if ch.isalpha()]
        scripts = {unicodedata.name(ch, "?").split()[0] for ch in letters}
        if len(scripts & _CONFUSABLE_SCRIPTS) > 1:
            return True
        if any(unicodedata.normalize("NFKC", ch) != ch for ch in letters):
            return True
    return False


def _mark_term(escaped: str, fmt: str) -> str:
    """A matched term emphasised for the target: ``<mark>`` in HTML, ``**`` in Markdown and Slack
    (only around letters or digits: no space, no look-alike at its edges), nothing in plain text."""
    if fmt == "html":
        return f"<mark>{escaped}</mark>"
    if fmt == "text":
        return escaped
    core = escaped.strip(" \t" + (_LOOKALIKE_EDGE if fmt == "slack" else ""))
    if not core or (fmt == "slack" and not any(ch.isalnum() for ch in core)):
        return escaped
    # No look-alike inside the marks either: slack_escape's stand-ins, or a homoglyph spoof.
    if (fmt == "slack" and any(ch in _LOOKALIKE_EDGE for ch in core)) or _confusable(core):
        return escaped
    start = escaped.index(core)
    return f"{escaped[:start]}**{core}**{escaped[start + len(core):]}"


def _cut_words(text: str, limit: int) -> str:
    """``text`` whole if it fits, else its words that fit with "…" (never part of a word);
    "" when not one word fits."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    if text[len(cut)] != " ":  # the cut falls inside a word: drop that word
        cut = cut[: cut.rfind(" ")] if " " in cut else ""
    cut = cut.rstrip()
    return cut + "…" if cut else ""


def marked_evidence(sentence: EvidenceSentence, fmt: str, limit: int) -> Markup:
    """A sentence with its matched terms emphasised (``**`` in the stored text), on one line,
    cut at a word boundary to ``limit`` characters: a term is shown whole or not at all, so a
    cut sentence never ends in a fragment of a term."""
    out: list[str] = []
    room = limit
    marked = clean(sentence.marked or sentence.text, one_line=True)
    for piece, term in _split_marks(marked, clean(sentence.text, one_line=True)):
        if room <= 0:
            break
        if term and len(piece) > room:  # the term does not fit whole: end before it
            if out:
                out[-1] = out[-1].rstrip() + "…"
            break
        shown = piece if term else _cut_words(piece, room)
        room -= len(shown)
        if shown != piece and not shown.endswith("…"):  # not even one more word fits
            if out:
                out[-1] = out[-1].rstrip() + "…"
            break
        escaped = _ESCAPERS[fmt](shown)
        out.append(_mark_term(escaped, fmt) if term else escaped)
        if shown != piece:
            break  # cut: nothing after the …
    return Markup("".join(out))


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""


_LANGUAGE_NAMES = {support.code: support.name for support in SUPPORTED}


def language_label(tag: str | None) -> str:
    """How a message names an article's language: "" for English or unknown (the
    default reader's language), else "Russian (ru)", or the tag itself when newsmon
    has no name for it. The tag came from the feed or page: cleaned and kept short."""
    code = primary_language(clean(tag, one_line=True))
    if code is None or code == "en":
        return ""
    name = _LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else code


def alert_context(alert: PendingAlert, *, terms: int = 10) -> dict[str, Any]:
    """The values a template sees as ``alert`` (all cleaned, none escaped yet)."""
    return {
        "id": alert.alert_key, "kind": alert.kind, "channel": alert.channel,
        "topic": clean(alert.topic, one_line=True), "severity": alert.severity,
        "title": clean(alert.title, one_line=True), "source": clean(alert.source, one_line=True),
        "url": safe_url(alert.url), "published": _when(alert.published),
        "created": _when(alert.created_at), "score": f"{alert.score:.1f}",
        "threshold": f"{alert.threshold:.1f}",
        "terms": [clean(t, one_line=True) for t in alert.terms[:terms]],
        "body": clean(alert.body),
        "language": language_label(alert.language),
        # A story alert's note (what changed, a burst), shown as its own line.
        "note": _sentence_case(clean(alert.body, one_line=True)) if alert.kind != "notice" else "",
        "keys": [alert.alert_key],
    }


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def story_context(alerts: Sequence[PendingAlert], *, terms: int = 10) -> dict[str, Any]:
    """The ``alert`` a template sees for one message of several rows (a story's topics): the
    first row's article, the topics joined ("ceasefire · negotiation"), the loudest severity,
    every row's terms and key, the note."""
    first = alerts[0]
    context = alert_context(first, terms=terms)
    topics = [clean(a.topic, one_line=True) for a in alerts]
    context["topic"] = " · ".join(dict.fromkeys(topics))
    context["topics"] = list(dict.fromkeys(topics))
    context["severity"] = max((a.severity for a in alerts), key=lambda s: SEVERITY_RANK.get(s, 1))
    context["terms"] = list(dict.fromkeys(clean(t, one_line=True) for a in alerts for t in a.terms))[:terms]
    context["keys"] = [a.alert_key for a in alerts]
    context["id"] = ", ".join(context["keys"])
    note = next((a.body for a in alerts if a.body), "")
    context["note"] = _sentence_case(clean(note, one_line=True))
    return context


def story_sections(alerts: Sequence[PendingAlert], fmt: str, count: int, chars: int,
                   terms: int) -> list[dict[str, Any]]:
    """Per topic of a message: its score, terms and up to ``count`` evidence sentences; a sentence
    already shown under an earlier topic is not repeated."""
    shown: set[str] = set()
    sections = []
    for alert in alerts:
        evidence: list[Markup] = []
        for sentence in alert.evidence:
            if len(evidence) >= count:
                break
            text = clean(sentence.text, one_line=True)
            if text in shown:
                continue
            shown.add(text)
            evidence.append(marked_evidence(sentence, fmt, chars))
        sections.append({"topic": clean(alert.topic, one_line=True), "severity": alert.severity,
                         "score": f"{alert.score:.1f}", "threshold": f"{alert.threshold:.1f}",
                         "terms": [clean(t, one_line=True) for t in alert.terms[:terms]],
                         "evidence": evidence})
    return sections


class Renderer:
    """Messages for one channel: its format, templates and length limits."""

    def __init__(self, fmt: Format, *, body_limit: int, title_limit: int,
                 title_template: str | None = None, body_template: str | None = None,
                 digest_template: str | None = None) -> None:
        self.fmt = fmt
        self.body_limit = body_limit
        self.title_limit = title_limit  # 0: the service has no title; it goes in the body
        self.env = _environment(fmt)
        self.title_env = _environment("text")
        family = "markdown" if fmt == "slack" else fmt
        try:
            self.title_tpl = self.title_env.from_string(title_template or _template_source("title.j2"))
            self.body_tpl = self.env.from_string(body_template or _template_source(f"alert.{family}.j2"))
            self.digest_tpl = self.env.from_string(
                digest_template or _template_source(f"digest.{family}.j2"))
            self.digest_title_tpl = self.title_env.from_string(_template_source("digest_title.j2"))
        except TemplateError as exc:
            raise TemplateProblem(f"template does not compile: {exc}") from None

    def measure(self, body: str) -> int:
        """The length the service will see (Slack's converter expands & to &amp;)."""
        return len(body) + (4 * body.count("&") if self.fmt == "slack" else 0)

    def _render(self, template: Any, **context: Any) -> str:
        try:
            return template.render(**context).strip()
        except Exception as exc:  # a user's template: report it, never crash delivery
            raise TemplateProblem(f"template failed: {type(exc).__name__}: {exc}") from None

    def _title(self, text: str) -> str:
        text = clean(text, one_line=True)
        limit = self.title_limit if self.title_limit > 0 else 250
        return _short(text, limit)

    def _with_title(self, title: str, body: str) -> Message:
        """Services without a title field get it as the body's first line."""
        if self.title_limit > 0:
            return Message(title, body)
        return Message("", f"{_bold(self.fmt)(title)}\n{body}")

    def alert(self, alert: PendingAlert) -> Message:
        """One alert, cut to fit: evidence first, never the link or the alert id."""
        return self.message([alert])

    def message(self, alerts: Sequence[PendingAlert]) -> Message:
        """One message for the rows of one story follow-up (``pacing.message_groups``), or one row:
        every topic with its evidence, cut to fit: evidence first, never the link or the ids."""
        single = len(alerts) == 1
        title = self._title(self._render(self.title_tpl, alert=alert_context(alerts[0]) if single
                                         else story_context(alerts)))
        room = self.body_limit - (0 if self.title_limit > 0 else self.measure(title) + 8)
        body = ""
        for count, chars, terms in EVIDENCE_STEPS:
            context = alert_context(alerts[0], terms=terms) if single else story_context(alerts, terms=terms)
            sections = story_sections(alerts, self.fmt, count, chars, terms)
            evidence = [e for section in sections for e in section["evidence"]]
            body = self._render(self.body_tpl, alert=context, evidence=evidence, sections=sections,
                                format=self.fmt)
            if self.measure(body) <= room:
                return self._with_title(title, body)
        return self._with_title(title, self._force_fit(body, alerts, room))

    def _force_fit(self, body: str, alerts: Sequence[PendingAlert], room: int) -> str:
        """Last resort for a custom template still too long: cut, then re-add link and id."""
        alert = alerts[0]
        ids = ", ".join(a.alert_key for a in alerts)
        tail = "\n".join(x for x in (safe_url(alert.url), f"Alert id: {ids}") if x)
        keep = max(room - self.measure(tail) - 3, 0)
        cut = body[:keep]
        while self.measure(cut) > keep:
            cut = cut[: -max(1, (self.measure(cut) - keep))]
        return f"{cut}…\n{tail}" if cut else tail

    def digest(self, alerts: Sequence[PendingAlert], *,
               reason: str) -> list[tuple[Message, list[PendingAlert]]]:
        """Alerts grouped by topic, split into as many messages as the limit needs.

        A story is one entry (all its rows, follow-ups included: its topics, its newest
        article, a one-line why); when the digest holds stories, entries go newest first.
        Each part lists complete entries (title, source, link, id); an entry is never cut
        in half, so every link arrives whole.
        """
        entries = digest_entries(alerts)
        parts: list[list[list[PendingAlert]]] = []
        current: list[list[PendingAlert]] = []
        for entry in entries:
            trial = [*current, entry]
            if current and self.measure(self._digest_body(trial, reason, 99, 99)) > self._digest_room():
                parts.append(current)
                current = [entry]
            else:
                current = trial
        if current:
            parts.append(current)
        out = []
        for number, part in enumerate(parts, 1):
            body = self._digest_body(part, reason, number, len(parts))
            if self.measure(body) > self._digest_room():
                body = body[: self._digest_room()]  # one entry alone over the limit: rare
            title = self._title(self._render(
                self.digest_title_tpl, **self._digest_context(part, reason, number, len(parts))))
            out.append((self._with_title(title, body), [a for entry in part for a in entry]))
        return out

    def _digest_room(self) -> int:
        return self.body_limit - (0 if self.title_limit > 0 else 120)

    def _digest_context(self, entries: Sequence[Sequence[PendingAlert]], reason: str, part: int,
                        parts: int) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        counts: dict[str, int] = {}  # entries per topic, for the title
        stories = any(entry[-1].story_id for entry in entries)
        for entry in entries:
            newest = entry[-1]
            context = alert_context(newest, terms=3) if len(entry) == 1 else story_context(
                _story_rows(entry), terms=3)
            if len(entry) > 1:
                context.update(title=clean(newest.title, one_line=True), url=safe_url(newest.url),
                               source=clean(newest.source, one_line=True), published=_when(newest.published))
                keys = [a.alert_key for a in entry]
                context["id"] = ", ".join(keys[:3]) + (f" (+{len(keys) - 3})" if len(keys) > 3 else "")
            context["title"] = _short(context["title"], 200)
            context["body"] = _short(context["body"], 300)
            context["why"] = _short(_why(entry), 240) if newest.story_id else ""
            topic = "newsmon" if newest.kind == "notice" else context["topic"]
            context["topic"] = topic
            # Stories: one flat list, newest first (``digest_entries``); grouping them by topic would
            # put an old story of one topic above a newer one of another. Each entry names its topics.
            groups.setdefault("" if stories else topic, []).append(context)
            for name in context.get("topics") or [topic]:
                counts[name] = counts.get(name, 0) + 1
        # ``total`` counts entries: a story is one alert however many rows it has.
        return {"groups": [{"topic": t, "alerts": a} for t, a in groups.items()],
                "summary": list(counts.items()),
                "total": len(entries), "reason": reason, "part": part, "parts": parts,
                "format": self.fmt, "entries": len(entries)}

    def _digest_body(self, entries: Sequence[Sequence[PendingAlert]], reason: str, part: int,
                     parts: int) -> str:
        return self._render(self.digest_tpl, **self._digest_context(entries, reason, part, parts))


def _story_rows(entry: Sequence[PendingAlert]) -> list[PendingAlert]:
    """A story's digest rows with one row per topic (the newest of each), oldest first."""
    by_topic: dict[str, PendingAlert] = {}
    for alert in entry:
        by_topic[alert.topic] = alert
    rows = sorted(by_topic.values(), key=lambda a: a.id)
    return rows


def _why(entry: Sequence[PendingAlert]) -> str:
    """A story entry's one line: its newest note, else what matched and how strongly."""
    note = next((clean(a.body, one_line=True) for a in reversed(entry) if a.body), "")
    if note:
        return _sentence_case(note)
    best: dict[str, PendingAlert] = {}
    for alert in entry:
        if alert.topic not in best or alert.score > best[alert.topic].score:
            best[alert.topic] = alert
    matched = "Matched " + ", ".join(f"{clean(t, one_line=True)} ({a.score:.1f} / {a.threshold:.1f})"
                                     for t, a in best.items())
    # The why carries the evidence: the strongest topic's first sentence (a backlog digest without
    # evidence leaves the reader to open every link).
    strongest = max(best.values(), key=lambda a: a.score - a.threshold)
    sentence = next((clean(e.text, one_line=True) for e in strongest.evidence if e.text.strip()), "")
    return f"{matched}: {sentence}" if sentence else matched


def _newest(entry: Sequence[PendingAlert]) -> datetime:
    return max(a.published or a.created_at for a in entry)


def digest_entries(alerts: Sequence[PendingAlert]) -> list[list[PendingAlert]]:
    """A digest's entries: a story's rows together (every follow-up of it), any other row alone;
    with stories among them, newest first (a backlog reads from the latest news down),
    else in the rows' order."""
    entries: dict[tuple[str, ...], list[PendingAlert]] = {}
    for alert in sorted(alerts, key=lambda a: a.id):
        key = ("story", alert.story_id) if alert.story_id else ("row", str(alert.id))
        entries.setdefault(key, []).append(alert)
    ordered = list(entries.values())
    if any(entry[0].story_id for entry in ordered):
        ordered.sort(key=_newest, reverse=True)
    return ordered
