"""Real servers on 127.0.0.1 for tests: static site, webhook receiver, SMTP.

Every server binds to 127.0.0.1 on an ephemeral port and is stopped by the
test that started it (the lifecycle is ``loopback.LoopbackServer``). Nothing
here talks to any other address.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.loopback import HOST, LoopbackServer, free_port

Response = tuple[int, dict[str, str], bytes]
Route = Response | Callable[[BaseHTTPRequestHandler], Response]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The sender died mid-request (a crash test kills it at random): like a
            # real service, accept nothing; the sender's outbox sends it again.
            self.close_connection = True
            return
        self.server.site.record(
            Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        route = self.server.site.routes.get(self.path.split("?", 1)[0])
        if route is None:
            status, headers, payload = 404, {"Content-Type": "text/plain"}, b"not found"
        elif callable(route):
            status, headers, payload = route(self)
        else:
            status, headers, payload = route
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


class Site(LoopbackServer[Recorded]):
    """A static HTTP site: ``routes`` maps a path to a response or a function."""

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        super().__init__()
        self.routes: dict[str, Route] = routes if routes is not None else {}
        self._server: _Server | None = None

    def _bind(self) -> int:
        self._server = _Server((HOST, 0), _Handler)
        self._server.site = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return int(self._server.server_address[1])

    def _close(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


class Mailbox(LoopbackServer[email.message.EmailMessage]):
    """A real SMTP server (aiosmtpd) on loopback that keeps the messages it receives."""

    def __init__(self) -> None:
        super().__init__()
        self._controller: Any = None

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return self.requests

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.record(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def _bind(self) -> int:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname=HOST, port=free_port())
        self._controller.start()
        return int(self._controller.port)

    def _close(self) -> None:
        self._controller.stop()


def rss(items: list[dict[str, str]], title: str = "Test feed") -> bytes:
    """A small RSS 2.0 document; each item dict has title, link, guid, description."""
    from xml.sax.saxutils import escape

    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
             f"<title>{escape(title)}</title><link>http://127.0.0.1/</link>"
             f"<description>test</description>"]
    for item in items:
        parts.append("<item>")
        for key in ("title", "link", "guid", "description", "pubDate"):
            if key in item:
                parts.append(f"<{key}>{escape(item[key])}</{key}>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def article_html(title: str, paragraphs: list[str]) -> bytes:
    from html import escape

    body = "\n".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title></head><body><header><nav><a href='/'>Home</a> <a href='/world'>World</a>"
        f"</nav></header><main><article><h1>{escape(title)}</h1>{body}</article></main>"
        f"<footer>Copyright Test News</footer></body></html>"
    ).encode()
