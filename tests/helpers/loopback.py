"""The lifecycle every test server shares: 127.0.0.1, a free port, recorded requests.

A server subclasses ``LoopbackServer`` and provides ``_bind`` (start serving on
127.0.0.1, return the port) and ``_close``; it calls ``record`` for what it
receives. The transport stays its own: ``servers.Site`` is a threaded
``http.server``, ``servers.Mailbox`` aiosmtpd, ``hostile.HostileServer`` raw
asyncio sockets. Nothing here binds or connects to any other address.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Generic, Self, TypeVar

HOST = "127.0.0.1"

R = TypeVar("R")


class LoopbackServer(Generic[R]):
    """Start/stop on 127.0.0.1, ``port`` and ``url()``, ``requests`` in arrival order.

    Use it as a context manager (``with Site() as site:``) or call ``start``/``stop``.
    """

    @property
    def scheme(self) -> str:
        return "http"

    def __init__(self) -> None:
        self.requests: list[R] = []
        self.port = 0
        self._lock = threading.Lock()  # handlers record from their own threads
        self._serving = False

    def _bind(self) -> int:
        """Start serving on ``HOST``; return the port."""
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self.port = self._bind()
        self._serving = True
        return self

    def stop(self) -> None:
        if self._serving:
            self._serving = False
            self._close()

    def url(self, path: str = "/", host: str = HOST) -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def record(self, request: R) -> None:
        with self._lock:
            self.requests.append(request)

    def reset(self) -> None:
        """Forget what was received so far."""
        with self._lock:
            self.requests.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def free_port() -> int:
    """A port free on 127.0.0.1 now: for a server that cannot bind port 0 (aiosmtpd's
    Controller), or an address where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
