"""Logging set-up: one line per event, text or JSON, secrets always masked.

Feed URLs count as secrets in part: private feeds put a token in the query
(``https://host/feed?token=...``) or the userinfo. ``public_url`` is what is
shown of a feed without a ``name`` (scheme, host, port and path), and
``url_secrets`` the parts the redaction filter masks wherever they appear.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "****"


def public_url(url: str) -> str:
    """A feed URL as shown in logs, CLI output, JSON and alerts: no userinfo, no query,
    no fragment (``?…`` marks a query that was dropped)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else parts.path
    return shown + ("?…" if parts.query else "")


def url_secrets(url: str) -> list[str]:
    """The userinfo and every query value of a feed URL (raw and decoded), to be masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: list[str] = []
    if parts.username or parts.password:
        found += [parts.username or "", parts.password or "",
                  unquote(parts.username or ""), unquote(parts.password or "")]
    if parts.query:
        found.append(parts.query)
        found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
        found += [raw.split("=", 1)[1] for raw in parts.query.split("&") if "=" in raw]
    return [s for s in dict.fromkeys(found) if len(s) >= 4]


def hide_url_secrets(text: str, url: str) -> str:
    """``text`` (an error message) with the secret parts of ``url`` masked."""
    text = text.replace(url, public_url(url))
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Replaces every known secret value in a record's final message.

    Secrets are the values read from ``${VAR}`` in the config (webhook URLs,
    SMTP passwords). The message is formatted here, once, so a secret passed as
    an argument is caught too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if s and len(s) >= 4}
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted(found | set(self.secrets), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args = self.redact(message), None
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
            # Fields passed with extra= (feed, alert, ...) reach the JSON output too.
            for key in extra_fields(record):
                value = record.__dict__[key]
                if isinstance(value, str):
                    record.__dict__[key] = self.redact(value)
        return True


# The attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> list[str]:
    """Names of the fields a call added with ``extra=`` (e.g. feed, alert, channel)."""
    return [k for k in record.__dict__ if k not in _STANDARD and not k.startswith("_")]


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in extra_fields(record):
            value = record.__dict__[key]
            entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text",
                  secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger; returns the redaction filter (to add secrets later)."""
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redactor)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    pin_leaky_loggers()
    for noisy in ("apscheduler.executors", "apscheduler.scheduler", "trafilatura", "htmldate",
                  "courlan", "charset_normalizer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return redactor


LEAKY_LOGGERS = ("apprise", "urllib3")


def pin_leaky_loggers() -> None:
    """Keep the loggers that print secrets at DEBUG at INFO or above, always.

    apprise logs full webhook URLs at DEBUG, and urllib3 (under apprise's
    requests) logs request lines such as ``POST /bot<token>/sendMessage``: a
    webhook's secret is often its path, which the redaction filter cannot know.
    """
    for name in LEAKY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def add_secrets(secrets: Iterable[str]) -> None:
    """Teach every redaction filter on the root logger new secrets (after a reload)."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.update(secrets)
