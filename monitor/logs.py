"""Logging set-up: one line per event, text or JSON, secrets always masked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

MASK = "****"


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
        entry = {
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
