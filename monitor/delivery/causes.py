"""Why a send failed, in words an operator can act on, captured while apprise sends.

apprise reports a failed send as ``False`` and keeps the reason to its logger
(the SMTP exception only at DEBUG, which newsmon pins off: apprise logs URLs
there). So the reason is captured at the source instead, for the duration of
one ``notify()`` only, in a context-local list (apprise runs each service in
a worker thread with a copy of the caller's context, as for the Retry-After
capture in ``deliverer``):

- ``smtplib.SMTP``'s connect, STARTTLS, login and sendmail are wrapped once to
  record the exception they raise (refused, DNS, TLS, timeout, the SMTP reply
  code and text, authentication refused) before apprise swallows it;
- the HTTP side (``requests``) is recorded by the response wrapper in
  ``deliverer`` through :func:`record`;
- apprise's own WARNING/ERROR lines during the send are kept as a fallback.

Everything recorded goes through :func:`mask_secrets` with the channel URL
before it is stored or logged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import requests

_CAUSES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "newsmon_send_causes", default=None)
_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "newsmon_send_notes", default=None)
CAUSE_MAX = 300  # characters of one cause kept (an HTTP body excerpt included)


def record(cause: str) -> None:
    """Keep ``cause`` for the send in progress in this context (no-op outside one)."""
    sink = _CAUSES.get()
    if sink is not None and cause not in sink:
        sink.append(cause[:CAUSE_MAX])


class Capture:
    """What one send left behind: exception causes first, then apprise's own lines."""

    def __init__(self) -> None:
        self.causes: list[str] = []
        self.notes: list[str] = []

    def best(self) -> str | None:
        if self.causes:
            return self.causes[-1]
        return self.notes[-1] if self.notes else None


@contextlib.contextmanager
def capturing() -> Iterator[Capture]:
    """Collect the causes of the send made inside the block."""
    capture = Capture()
    causes, notes = _CAUSES.set(capture.causes), _NOTES.set(capture.notes)
    try:
        yield capture
    finally:
        _CAUSES.reset(causes)
        _NOTES.reset(notes)


# --- words for exceptions ----------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (requests wraps urllib3 wraps socket errors)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__,
                       getattr(current, "reason", None),
                       *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))):
            if isinstance(nested, BaseException):
                todo.append(nested)


def _reply(code: Any, text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"SMTP {code} {' '.join(str(text).split())}".strip()


def describe(exc: BaseException) -> str:
    """One line saying why ``exc`` happened, most specific cause first."""
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, smtplib.SMTPAuthenticationError):
            return f"authentication refused: {_reply(e.smtp_code, e.smtp_error)}"
        if isinstance(e, smtplib.SMTPNotSupportedError):
            return f"authentication not possible: the SMTP server offers no AUTH ({e})"
        if isinstance(e, smtplib.SMTPRecipientsRefused):
            replies = "; ".join(f"{_reply(c, t)}" for c, t in e.recipients.values())
            return f"recipient refused: {replies}"
        if isinstance(e, smtplib.SMTPSenderRefused):
            return f"sender refused: {_reply(e.smtp_code, e.smtp_error)}"
        if isinstance(e, smtplib.SMTPResponseException):
            return f"the SMTP server answered {_reply(e.smtp_code, e.smtp_error)}"
        if isinstance(e, smtplib.SMTPServerDisconnected):
            return f"the SMTP server closed the connection ({e or 'no reason given'})"
    for e in chain:
        if isinstance(e, socket.gaierror) or "NameResolution" in type(e).__name__ \
                or "Name or service not known" in str(e) or "getaddrinfo" in str(e):
            return f"DNS lookup failed ({_short(e)})"
        if isinstance(e, ConnectionRefusedError) or "Connection refused" in str(e):
            return "connection refused (nothing listens at the service's address)"
        if isinstance(e, ssl.SSLError | requests.exceptions.SSLError):
            return f"TLS error: {_short(e)}"
    for e in chain:
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return "connect timed out (the service did not answer the connection)"
        if isinstance(e, requests.exceptions.ReadTimeout):
            return "timed out waiting for the service's answer (read timeout)"
        if isinstance(e, TimeoutError | socket.timeout):
            return "timed out (the service did not answer in time)"
    for e in chain:
        if isinstance(e, ConnectionResetError):
            return "the connection was reset by the service"
        if isinstance(e, smtplib.SMTPException):
            return f"SMTP error: {_short(e)}"
        if isinstance(e, OSError) and e.strerror:
            return f"network error: {e.strerror}"
    return f"{type(exc).__name__}: {_short(exc)}"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # urllib3 wraps its reason in the pool's repr: keep the part after the last colon-space
    # when it is long ("HTTPConnectionPool(host=..., port=...): Max retries ... (Caused by ...)").
    return text[:200]


def http_cause(status: int, body: str) -> str:
    """``HTTP 403: {"error": "invalid token"}`` (an excerpt of the body, one line)."""
    excerpt = " ".join(body.split())[:160]
    prefix = "authentication refused: " if status in (401, 403) else ""
    return f"{prefix}HTTP {status}" + (f": {excerpt}" if excerpt else "")


def mask_secrets(text: str, url: str) -> str:
    """``text`` with the channel URL's secrets masked: the URL itself, its password,
    and every long token of its path or query (webhook secrets live there)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    secrets = {url, rest}
    userinfo = rest.split("@", 1)[0] if "@" in rest.split("/", 1)[0] else ""
    if ":" in userinfo:
        secrets.add(userinfo.split(":", 1)[1])
    secrets.update(p for p in re.split(r"[/:@?&=#,+]+", rest) if len(p) >= 12)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "****")
    return re.sub(r"\b([a-z][a-z0-9+.-]*)://\S+", r"\1://****", text)


# --- the capture ------------------------------------------------------------------------


def _recording(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (OSError, smtplib.SMTPException) as exc:
            record(describe(exc))
            raise

    wrapper._newsmon_cause = True  # type: ignore[attr-defined]  # a marker attribute on the wrapped function
    return wrapper


class _AppriseLines(logging.Filter):
    """Keeps apprise's WARNING+ lines of the send in progress (passes every record on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = _NOTES.get()
        if sink is not None and record.levelno >= logging.WARNING:
            with contextlib.suppress(Exception):
                sink.append(" ".join(record.getMessage().split())[:CAUSE_MAX])
        return True


_LINES = _AppriseLines()


def install() -> None:
    """Wrap the SMTP calls and watch apprise's logger (idempotent)."""
    for name in ("connect", "starttls", "login", "sendmail", "ehlo"):
        method = getattr(smtplib.SMTP, name)
        if not getattr(method, "_newsmon_cause", False):
            setattr(smtplib.SMTP, name, _recording(method))
    logger = logging.getLogger("apprise")
    if _LINES not in logger.filters:
        logger.addFilter(_LINES)
