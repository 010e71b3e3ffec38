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
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


def marked_evidence(sentence: EvidenceSentence, fmt: str, limit: int) -> Markup:
    """A sentence with its matched terms emphasised (``**`` in the stored text)."""
    parts = clean(sentence.marked or sentence.text, one_line=True).split("**")
    out: list[str] = []
    room = limit
    for index, part in enumerate(parts):
        if room <= 0:
            break
        piece = _short(part, room)
        room -= len(piece)
        if not piece:
            continue
        escaped = _ESCAPERS[fmt](piece)
        term = index % 2 == 1 and index < len(parts) - 1  # inside a ** pair
        if term and fmt == "html":
            out.append(f"<mark>{escaped}</mark>")
        elif term:
            out.append(f"**{escaped}**")
        else:
            out.append(escaped)
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
    }


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
        title = self._title(self._render(self.title_tpl, alert=alert_context(alert)))
        room = self.body_limit - (0 if self.title_limit > 0 else self.measure(title) + 8)
        body = ""
        for count, chars, terms in EVIDENCE_STEPS:
            evidence = [marked_evidence(e, self.fmt, chars) for e in alert.evidence[:count]]
            body = self._render(self.body_tpl, alert=alert_context(alert, terms=terms),
                                evidence=evidence, format=self.fmt)
            if self.measure(body) <= room:
                return self._with_title(title, body)
        return self._with_title(title, self._force_fit(body, alert, room))

    def _force_fit(self, body: str, alert: PendingAlert, room: int) -> str:
        """Last resort for a custom template still too long: cut, then re-add link and id."""
        tail = "\n".join(x for x in (safe_url(alert.url), f"Alert id: {alert.alert_key}") if x)
        keep = max(room - self.measure(tail) - 3, 0)
        cut = body[:keep]
        while self.measure(cut) > keep:
            cut = cut[: -max(1, (self.measure(cut) - keep))]
        return f"{cut}…\n{tail}" if cut else tail

    def digest(self, alerts: Sequence[PendingAlert], *,
               reason: str) -> list[tuple[Message, list[PendingAlert]]]:
        """Alerts grouped by topic, split into as many messages as the limit needs.

        Each part lists complete entries (title, source, link, id); an alert is
        never cut in half, so every link arrives whole.
        """
        parts: list[list[PendingAlert]] = []
        current: list[PendingAlert] = []
        for alert in alerts:
            trial = [*current, alert]
            if current and self.measure(self._digest_body(trial, reason, 99, 99)) > self._digest_room():
                parts.append(current)
                current = [alert]
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
            out.append((self._with_title(title, body), part))
        return out

    def _digest_room(self) -> int:
        return self.body_limit - (0 if self.title_limit > 0 else 120)

    def _digest_context(self, alerts: Sequence[PendingAlert], reason: str, part: int,
                        parts: int) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for alert in alerts:
            context = alert_context(alert, terms=3)
            context["title"] = _short(context["title"], 200)
            context["body"] = _short(context["body"], 300)
            topic = "newsmon" if alert.kind == "notice" else context["topic"]
            groups.setdefault(topic, []).append(context)
        return {"groups": [{"topic": t, "alerts": a} for t, a in groups.items()],
                "total": len(alerts), "reason": reason, "part": part, "parts": parts,
                "format": self.fmt}

    def _digest_body(self, alerts: Sequence[PendingAlert], reason: str, part: int,
                     parts: int) -> str:
        return self._render(self.digest_tpl, **self._digest_context(alerts, reason, part, parts))
