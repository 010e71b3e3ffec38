"""A channel as apprise sees it: build it from its config, send one message through it.

Everything newsmon knows about apprise is here: parsing a channel URL without
leaking its tokens (``mask_tokens``), the service's format, body limit and
timeouts, one bounded ``notify()``, and why it failed, in words. The delivery job
(``monitor.delivery.deliverer``) decides what to send when; this module sends.

Secrets: errors and logs name the channel, never its URL; apprise's own
logger stays at INFO or above (``monitor.logs``).

Retry-After: apprise neither honours nor exposes it, so newsmon reads it from
the HTTP response itself. ``requests.Session.send`` (which every HTTP plugin of
apprise goes through, whether it calls ``requests.post`` or a session) is
wrapped once to copy the status and ``Retry-After`` of each response into a
context-local list; apprise runs each service in a worker thread with a copy
of the caller's context (``submit_with_context``), so the list set around one
``notify()`` sees exactly that call's responses. Outside such a call the
wrapper does nothing. Targets that are not HTTP (SMTP, XMPP, MQTT...) have no
Retry-After: they get the exponential backoff alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import apprise
import requests

from monitor.config import ChannelConfig
from monitor.delivery import causes
from monitor.delivery.render import Format, Message, Renderer, TemplateProblem
from monitor.errors import DeliveryError
from monitor.ingest.httpdates import retry_after_seconds


class ChannelError(DeliveryError):
    """A channel URL apprise cannot use. The message never holds the URL."""


def mask_channel_url(url: str) -> str:
    """``slack://T0/B0/secret`` → ``slack://****`` (scheme only): safe to show."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://****"


class _Collector(logging.Filter):
    """Keeps the messages of the records it stops."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


@contextlib.contextmanager
def _apprise_silenced() -> Iterator[list[str]]:
    """Stop apprise's log records while a URL is parsed, and hand their text back.

    apprise logs a URL it cannot parse whole, or its tokens one by one
    (``invalid Slack (third) Token (C...)``), at ERROR: no redaction of known
    values catches a token alone. The caller masks them (``mask_tokens``) and
    puts the hint in its own error. Only at start-up and on reload.
    """
    logger = logging.getLogger("apprise")
    collector = _Collector()
    logger.addFilter(collector)
    try:
        yield collector.messages
    finally:
        logger.removeFilter(collector)


def mask_tokens(text: str, url: str) -> str:
    """``text`` with every part of ``url`` (tokens, user, password, host, path) masked."""
    rest = url.split("://", 1)[1] if "://" in url else url
    parts = {url, rest, *(p for p in re.split(r"[/:@?&=#,+]+", rest) if len(p) >= 3)}
    for part in sorted(parts, key=len, reverse=True):
        text = text.replace(part, "****")
    # apprise shortens long values (C...T): mask what is left of any URL.
    return re.sub(r"\b([a-z][a-z0-9+.-]*)://\S+", r"\1://****", text)


# --- Retry-After capture ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status: int
    retry_after: str | None
    body: str = ""  # an excerpt, only of an error response (masked before use)


_RESPONSES: contextvars.ContextVar[list[HttpOutcome] | None] = contextvars.ContextVar(
    "newsmon_http_responses", default=None)


def install_response_capture() -> None:
    """Wrap ``requests.Session.send`` once (idempotent) to record responses.

    Only the status, Retry-After and (of an error response) a body excerpt are
    kept, only while a send is in progress in this context, and the failure's
    cause (``causes.record``); no URL or header is stored.
    """
    original = requests.Session.send
    if getattr(original, "_newsmon_capture", False):
        return

    @functools.wraps(original)
    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        sink = _RESPONSES.get()
        try:
            response = original(self, request, **kwargs)
        except requests.RequestException as exc:
            if sink is not None:
                causes.record(causes.describe(exc))
            raise
        if sink is not None:
            body = ""
            if response.status_code >= 400:
                with contextlib.suppress(Exception):
                    body = response.text[:400]
                causes.record(causes.http_cause(response.status_code, body))
            sink.append(HttpOutcome(response.status_code, response.headers.get("Retry-After"),
                                    body))
        return response

    send._newsmon_capture = True  # type: ignore[attr-defined]  # a marker attribute on the wrapper
    requests.Session.send = send  # type: ignore[method-assign]  # apprise exposes no hook: see the docstring


# --- one channel -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str = ""
    retry_after: float | None = None  # seconds the service asked us to wait
    status: int | None = None

    @property
    def permanent(self) -> bool:
        """The service refused this message (a 4xx but 408/425/429): retrying the
        same message is unlikely to help, so it counts towards ``max_attempts``.
        Outages (5xx, timeouts, refused connections, 429) only age an alert."""
        return self.status is not None and 400 <= self.status < 500 \
            and self.status not in (408, 425, 429)


@dataclass
class Target:
    """One configured channel, ready to send."""

    config: ChannelConfig
    notifier: apprise.Apprise | None  # None: the log channel
    renderer: Renderer
    body_format: str | None  # passed to apprise so it converts nothing it need not


def _format_for(channel: ChannelConfig, service: Any) -> tuple[Format, str]:
    """(our format, apprise body_format) for a channel's service."""
    from apprise.plugins.slack import NotifySlack

    wanted: Literal["text", "markdown", "html"]
    if channel.format == "auto":
        resolved = service.resolve_format(None)
        wanted = ("html" if resolved == apprise.NotifyFormat.HTML
                  else "markdown" if resolved == apprise.NotifyFormat.MARKDOWN else "text")
    else:
        wanted = channel.format
    if wanted == "markdown" and isinstance(service, NotifySlack):
        return "slack", str(apprise.NotifyFormat.MARKDOWN)
    return wanted, str({"html": apprise.NotifyFormat.HTML, "markdown": apprise.NotifyFormat.MARKDOWN,
                        "text": apprise.NotifyFormat.TEXT}[wanted])


def _renderer(channel: ChannelConfig, fmt: Format, *, body_limit: int,
              title_limit: int) -> Renderer:
    try:
        return Renderer(fmt, body_limit=body_limit, title_limit=title_limit,
                        title_template=channel.title_template,
                        body_template=channel.body_template,
                        digest_template=channel.digest_template)
    except TemplateProblem as exc:
        raise ChannelError(f"channel {channel.name}: {exc}") from None


def build_target(channel: ChannelConfig, timeout: float) -> Target:
    """An apprise object for ``channel``; ChannelError (URL masked) when apprise refuses it."""
    # A service deadline covers the whole send, retries and a slow-dripping
    # response included (apprise stops waiting and reports TIMEOUT).
    asset = apprise.AppriseAsset(service_timeout=timeout)
    notifier = apprise.Apprise(asset=asset)
    with _apprise_silenced() as said:
        added = notifier.add(channel.url)
    if not added:
        hints = "; ".join(dict.fromkeys(mask_tokens(m, channel.url) for m in said))
        raise ChannelError(
            f"channel {channel.name}: apprise cannot use the URL {mask_channel_url(channel.url)}"
            " (check the scheme and the tokens)" + (f": {hints}" if hints else ""))
    service = notifier[0]
    _tune(service, channel.url, timeout)
    fmt, body_format = _format_for(channel, service)
    body_limit = int(service.body_maxlen or 32768)
    if channel.max_length:
        body_limit = min(body_limit, channel.max_length)
    renderer = _renderer(channel, fmt, body_limit=body_limit,
                         title_limit=int(service.title_maxlen or 0))
    return Target(channel, notifier, renderer, body_format)


def _tune(service: Any, url: str, timeout: float) -> None:
    """``delivery.timeout`` as the service's connect and read timeouts (unless the
    URL sets ``cto``/``rto`` itself): apprise's own 4 s read timeout would end
    every attempt at a service answering in 6 s. And no apprise throttle
    (5.5 s between two sends of one service object): ``rate_limit`` paces."""
    query = url.split("?", 1)[1] if "?" in url else ""
    given = {part.split("=", 1)[0].lower() for part in query.split("&") if part}
    if "cto" not in given:
        service.socket_connect_timeout = float(timeout)
    if "rto" not in given:
        service.socket_read_timeout = float(timeout)
    service.request_rate_per_sec = 0


def send(target: Target, message: Message, timeout: float) -> SendResult:
    """Send one message through the target's apprise object; bounded in time; never raises."""
    assert target.notifier is not None  # the log channel has no apprise object
    sink: list[HttpOutcome] = []
    token = _RESPONSES.set(sink)
    try:
        with causes.capturing() as capture:
            result = target.notifier.notify(
                title=message.title, body=message.body, body_format=target.body_format,
                timeout=timeout)
    except Exception as exc:  # a plugin bug must not stop the other channels
        return SendResult(False, f"{type(exc).__name__} while sending")
    finally:
        _RESPONSES.reset(token)
    if result:
        return SendResult(True)
    failure = _failure(result, sink, capture.best(), timeout)
    masked = causes.mask_secrets(failure.error, target.config.url)
    return SendResult(False, masked, failure.retry_after, failure.status)


def _failure(result: Any, responses: Sequence[HttpOutcome], cause: str | None,
             timeout: float) -> SendResult:
    """Why a send failed, in words: the captured cause (refused, DNS, TLS, SMTP
    reply, HTTP status and body), else the timeout or status apprise reports."""
    status = getattr(result, "status", None)
    last = responses[-1] if responses else None
    wait = None
    for outcome in reversed(responses):
        wait = retry_after_seconds(outcome.retry_after)
        if wait is not None:
            break
    code = last.status if last is not None else None
    if status == apprise.AppriseResultStatus.TIMEOUT:
        after = f" (last seen: {cause})" if cause and last is None else ""
        return SendResult(False, f"timed out: no answer within {timeout:g}s"
                          + after, wait, code)
    if cause:
        if wait:
            cause += f", Retry-After {wait:g}s"
        return SendResult(False, cause, wait, code)
    if last is None:
        return SendResult(False, "the send failed and apprise gave no reason"
                          " (run `newsmon alerts test <channel>` to see more)")
    if last.status < 400:
        return SendResult(False, f"the service refused the message (HTTP {last.status})",
                          wait, last.status)
    return SendResult(False, f"HTTP {last.status}" + (f", Retry-After {wait:g}s" if wait else ""),
                      wait, last.status)
