"""Every error newsmon raises, as one tree under ``NewsmonError``.

::

    NewsmonError
    ├── ConfigError             a problem in a config or rule file: ``file:line:col: message``
    │   └── ConfigErrors        several at once (``load_config`` and ``load_rules`` raise this)
    ├── StageError              a fetch/parse/extract failure, with the ``kind`` stored per feed
    │   ├── FetchError          HTTP, TLS, egress policy, size and time limits
    │   └── FeedParseError      the bytes are not a feed
    ├── OpmlError               an OPML document that cannot be read
    ├── StorageError            the database (``monitor.storage.StoreError`` is one)
    ├── DeliveryError           sending alerts (``monitor.delivery.channels.ChannelError`` is one)
    │   └── TemplateProblem     a channel template that does not compile or render (also a ValueError)
    └── MissingDependencyError  an optional extra is not installed (also an ImportError)

A caller that only needs "did newsmon fail" catches ``NewsmonError``; one branch
when it can do something specific (``ConfigError``: show the file and line).

This is the base layer: it imports nothing from ``monitor``. The classes are
still importable where they were first defined (``monitor.yamlfile``,
``monitor.models``, ``monitor.ingest.parse``, ...). Errors cross the worker
process pool, so each survives pickling with its attributes (``__dict__`` is
pickled beside ``args``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "DeliveryError",
    "FeedParseError",
    "FetchError",
    "FetchErrorKind",
    "MissingDependencyError",
    "NewsmonError",
    "OpmlError",
    "StageError",
    "StorageError",
    "TemplateProblem",
]


class NewsmonError(Exception):
    """The root of every error newsmon raises on purpose (a bug is anything else)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt without calling __init__ (subclasses take keyword-only arguments):
        # the same args and attributes come out of the worker pool as went in.
        return (_restore, (type(self), self.args, self._state()))

    def _state(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _restore(cls: type[NewsmonError], args: tuple[Any, ...], state: dict[str, Any]) -> NewsmonError:
    error = cls.__new__(cls, *args)
    error.args = args
    for name, value in state.items():
        setattr(error, name, value)
    return error


# --- config and rule files -----------------------------------------------------------


class ConfigError(NewsmonError):
    """A problem in a config or rule file, with where it is.

    ``str()`` gives ``file:line:col: message``; ``line`` and ``col`` are 1-based
    or None when unknown.
    """

    def __init__(
        self, message: str, *, path: Path | str | None = None, line: int | None = None,
        col: int | None = None, key: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.col = col
        self.key = key
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigErrors(ConfigError):
    """Several ConfigErrors at once, so a user fixes them all in one go.

    ``errors`` holds each one (with its own file and line); ``str()`` is one per line.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return self.message


# --- stages: fetch, parse, extract -----------------------------------------------------

# The kinds of fetch failure, stored as a feed's ``last_error_kind``.
FetchErrorKind = Literal[
    "timeout",  # the total deadline passed
    "too_large",  # the byte cap was reached (after decompression)
    "blocked",  # the egress policy refused the address, port or scheme
    "redirects",  # too many redirects, or a refused redirect target
    "http_status",  # 4xx/5xx (429 and 503 carry ``retry_after``)
    "connection",  # refused, reset, DNS failure, truncated body
    "tls",  # certificate or handshake failure (never retried insecurely)
    "bad_encoding",  # an unsupported Content-Encoding, or a corrupt stream
    "not_a_feed",  # a 200 that is not a feed (HTML page, junk, empty)
    "bad_content_type",  # an article URL that is a PDF, image, video...
]


class StageError(NewsmonError):
    """A failure with a kind that is recorded per feed or per item.

    Messages never contain secrets, and name the URL they concern.
    """

    kind: str = "error"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class FetchError(StageError):
    """An HTTP fetch that failed; ``kind`` is one of ``FetchErrorKind``."""

    kind = "connection"

    def __init__(
        self,
        message: str,
        *,
        kind: FetchErrorKind | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, kind=kind)
        self.status = status
        self.retry_after = retry_after  # seconds, already parsed from Retry-After


class FeedParseError(StageError):
    """Bytes that are not a feed (HTML, junk, empty, or refused as hostile)."""

    kind = "not_a_feed"


class OpmlError(NewsmonError):
    """The OPML document cannot be read (not XML, not OPML, too big)."""


# --- storage and delivery ------------------------------------------------------------


class StorageError(NewsmonError):
    """The database cannot do what was asked (locked, disk full, corrupt, too new)."""


class DeliveryError(NewsmonError):
    """Alerts cannot be sent as configured (a channel URL, a template)."""


class TemplateProblem(DeliveryError, ValueError):
    """A channel template that does not compile or render (shown by ``newsmon check``).

    Still a ValueError, as it was before the error tree.
    """


# --- packaging ---------------------------------------------------------------------------


class MissingDependencyError(NewsmonError, ImportError):
    """An optional module is not installed; the message names the pip extra that brings it.

    Still an ImportError, so code that falls back when an import fails keeps working.
    """

    def __init__(self, message: str, *, module: str, extra: str | None = None) -> None:
        super().__init__(message, name=module)
        self.module = module
        self.extra = extra

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "name": self.name}  # ImportError keeps ``name`` outside __dict__
