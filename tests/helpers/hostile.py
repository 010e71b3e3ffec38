"""A hostile HTTP server and a canary listener for tests (harness H1-H3).

Both bind only to 127.0.0.1 on an ephemeral port (the lifecycle is
``loopback.LoopbackServer``, shared with ``servers.Site``) and run an asyncio
loop in a daemon thread of the test process, so sync and async tests can use
them alike. They speak raw bytes on the socket, so they can break HTTP at will.
Use them as context managers::

    with HostileServer() as srv, Canary() as canary:
        srv.url("/gzip-bomb")       # http://127.0.0.1:<port>/gzip-bomb
        canary.hits                 # every connection the canary received

``HostileServer`` serves one behaviour per path (see ``ROUTES`` at the bottom).
Requests in absolute form (``GET http://feed.test/feed``, as sent to a proxy)
are served too, and recorded with ``proxied=True``.

``StaticResolver`` is an aiohttp resolver that maps test names (``feed.test``)
to loopback addresses and never performs a real DNS lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import json
import os
import random
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from tests.helpers.loopback import HOST, LoopbackServer, R

__all__ = [
    "RSS",
    "Canary",
    "CanaryHit",
    "HostileServer",
    "RecordedRequest",
    "StaticResolver",
    "big_body",
    "encode_body",
]

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Hostile test feed</title>
<link>http://feed.test/</link><description>test</description>
<item><title>First item</title><link>http://feed.test/a/1</link><guid>a-1</guid>
<description>Hello world</description></item>
<item><title>Second item</title><link>http://feed.test/a/2</link><guid>a-2</guid>
<description>Another one</description></item>
</channel></rss>
"""
HTML = b"""<!doctype html><html><head><title>Just a moment...</title></head>
<body><form action="/login"><input name="user"><input type="password" name="pw"></form>
</body></html>"""
BOMB_SIZE = 1 << 30  # 1 GiB of zeros once inflated
_MIB = 1 << 20


# --- an asyncio loop in a thread --------------------------------------------------------


class _LoopThread:
    """Runs an asyncio loop in a daemon thread; ``call`` runs a coroutine there."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Awaitable[Any], timeout: float = 10.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    def stop(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(_cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


# --- records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    target: str  # as sent on the request line
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    proxied: bool  # absolute-form target, i.e. the server was used as a proxy
    peer: tuple[str, int]
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class CanaryHit:
    peer: tuple[str, int]
    first_line: str
    at: float


# --- the hostile server ------------------------------------------------------------------

Handler = Callable[["HostileServer", RecordedRequest, asyncio.StreamWriter], Awaitable[None]]


class _LoopServer(LoopbackServer[R]):
    """An asyncio server on 127.0.0.1:<ephemeral>, run in a thread of its own.

    Subclasses provide ``_serve``; ``_ssl`` makes it TLS.
    """

    _thread_name = "loopback-server"

    def __init__(self) -> None:
        super().__init__()
        self._ssl: ssl.SSLContext | None = None
        self._runner: _LoopThread | None = None
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _bind(self) -> int:
        self._runner = _LoopThread(self._thread_name)
        self._server = self._runner.call(
            asyncio.start_server(self._serve, HOST, 0, ssl=self._ssl, limit=1 << 16)
        )
        return int(self._server.sockets[0].getsockname()[1])

    def _close(self) -> None:
        assert self._runner is not None
        server = self._server

        async def _close() -> None:
            if server is not None:
                server.close()

        with contextlib.suppress(Exception):
            self._runner.call(_close())
        self._runner.stop()
        self._runner = None


class HostileServer(_LoopServer[RecordedRequest]):
    """One hostile (or ordinary) behaviour per path, on 127.0.0.1:<ephemeral>.

    ``ssl_context`` makes it an HTTPS server. ``requests`` lists every parsed
    request; ``max_active`` the highest number of concurrent requests seen per path.
    """

    _thread_name = "hostile-server"

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self._ssl = ssl_context
        self.connections = 0
        self.max_active: dict[str, int] = {}
        self._active: dict[str, int] = {}
        self._bombs: dict[str, bytes] = {}

    # helpers for tests

    @property
    def scheme(self) -> str:
        return "https" if self._ssl else "http"

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.max_active.clear()
            self.connections = 0

    def bomb(self, encoding: str) -> bytes:
        """The 1 GiB-of-zeros bomb for an encoding, built once per server (cheaply)."""
        with self._lock:
            if encoding not in self._bombs:
                self._bombs[encoding] = _BOMB_BUILDERS[encoding]()
            return self._bombs[encoding]

    # the connection handler

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            writer.close()
            return
        req = _parse_request(head, writer.get_extra_info("peername") or ("?", 0))
        with self._lock:
            self.requests.append(req)
            self._active[req.path] = self._active.get(req.path, 0) + 1
            self.max_active[req.path] = max(self.max_active.get(req.path, 0), self._active[req.path])
        try:
            await _route(req.path)(self, req, writer)
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with self._lock:
                self._active[req.path] -= 1
            with contextlib.suppress(Exception):
                writer.close()


def _parse_request(head: bytes, peer: tuple[str, int]) -> RecordedRequest:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = [*lines[0].split(" "), "", "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    proxied = target.startswith(("http://", "https://"))
    parts = urlsplit(target)
    return RecordedRequest(
        method=method,
        target=target,
        path=parts.path or "/",
        query=parse_qs(parts.query),
        headers=headers,
        proxied=proxied,
        peer=(str(peer[0]), int(peer[1])),
    )


def _head(
    status: str = "200 OK",
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    *,
    length: int | None = None,
) -> bytes:
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if length is not None:
        items.append(("Content-Length", str(length)))
    items.append(("Connection", "close"))
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in items]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(
    writer: asyncio.StreamWriter,
    body: bytes,
    *,
    status: str = "200 OK",
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (),
) -> None:
    writer.write(_head(status, headers, length=len(body)) + body)
    await writer.drain()


async def _send_big(writer: asyncio.StreamWriter, body: bytes, headers: Mapping[str, str]) -> None:
    """Send a large body in pieces, stopping when the client goes away."""
    writer.write(_head("200 OK", headers, length=len(body)))
    view = memoryview(body)
    for start in range(0, len(view), _MIB):
        writer.write(view[start : start + _MIB])
        await writer.drain()


# --- bombs ---------------------------------------------------------------------------------


def _gzip_bomb() -> bytes:
    """gzip of 1 GiB of zeros (~1 MB), built in ~0.3 s.

    After a full flush the deflate state is reset, so compressing the same
    1 MiB again yields the same bytes: compress once, repeat, add the trailer.
    """
    zeros = bytes(_MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(BOMB_SIZE // _MIB):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, BOMB_SIZE & 0xFFFFFFFF)
    return header + segment * (BOMB_SIZE // _MIB) + comp.flush() + trailer


def _deflate_bomb() -> bytes:
    """Raw deflate (no zlib wrapper, as some servers send) of 1 GiB of zeros."""
    zeros = bytes(_MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    return segment * (BOMB_SIZE // _MIB) + comp.flush()


def _br_bomb() -> bytes:
    import brotli

    zeros = bytes(_MIB)
    comp = brotli.Compressor(quality=5)
    parts = [comp.process(zeros) for _ in range(BOMB_SIZE // _MIB)]
    return b"".join([*parts, comp.finish()])


def _zstd_bomb() -> bytes:
    import zstandard

    zeros = bytes(_MIB)
    comp = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [comp.compress(zeros) for _ in range(BOMB_SIZE // _MIB)]
    return b"".join([*parts, comp.flush()])


def _double_gzip_bomb() -> bytes:
    return gzip.compress(_gzip_bomb(), compresslevel=9)


_BOMB_BUILDERS: dict[str, Callable[[], bytes]] = {
    "gzip": _gzip_bomb,
    "deflate": _deflate_bomb,
    "br": _br_bomb,
    "zstd": _zstd_bomb,
    "gzip, gzip": _double_gzip_bomb,
}


# --- routes --------------------------------------------------------------------------------


def _q(req: RecordedRequest, name: str, default: str) -> str:
    return req.query.get(name, [default])[0]


async def _feed(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(w, RSS, headers={"Content-Type": "application/rss+xml; charset=utf-8"})


async def _echo(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    body = json.dumps({"method": req.method, "target": req.target, "headers": req.headers})
    await _send(w, body.encode(), headers={"Content-Type": "application/json"})


async def _slowloris_headers(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\n")
    for n in range(10_000):  # one header line every 0.5 s, never the blank line
        w.write(f"X-Slow-{n}: x\r\n".encode())
        await w.drain()
        await asyncio.sleep(0.5)


async def _slow_body(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    length = int(_q(req, "length", str(10 * 1000 * 1000)))
    interval = float(_q(req, "interval", "1"))
    w.write(_head("200 OK", {"Content-Type": "application/rss+xml"}, length=length))
    for _ in range(length):
        w.write(b"<")
        await w.drain()
        await asyncio.sleep(interval)


async def _endless(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    # No Content-Length and not chunked: the body runs until the connection closes.
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n")
    block = b"<item>" + b"x" * (64 * 1024 - 6)
    while True:
        w.write(block)
        await w.drain()


def _bomb_route(encoding: str) -> Handler:
    async def handler(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
        body = await asyncio.get_running_loop().run_in_executor(None, srv.bomb, encoding)
        await _send_big(w, body, {"Content-Type": "application/rss+xml", "Content-Encoding": encoding})

    return handler


def _encoded_feed(encoding: str, body: bytes) -> Handler:
    async def handler(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
        await _send(w, body, headers={"Content-Type": "application/rss+xml", "Content-Encoding": encoding})

    return handler


def encode_body(body: bytes, encodings: str) -> bytes:
    """Apply Content-Encoding tokens in order ("gzip, br" = gzip first, then br)."""
    import brotli
    import zstandard

    for token in (t.strip().lower() for t in encodings.split(",")):
        if token in ("gzip", "x-gzip"):
            body = gzip.compress(body)
        elif token == "deflate":
            body = zlib.compress(body)
        elif token == "br":
            body = brotli.compress(body, quality=5)  # quality 11 takes seconds on MBs
        elif token == "zstd":
            body = zstandard.ZstdCompressor().compress(body)
        # "identity" and unknown tokens leave the body as is (the client must refuse unknowns)
    return body


def big_body(size: int) -> bytes:
    """``size`` bytes of deterministic, moderately compressible text (like a large feed)."""
    rng = random.Random(size)
    words = [rng.randbytes(4).hex().encode() for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=1000)) + b"\n"
    return bytes(out[:size])


async def _encoded(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    """RSS (or ``size`` bytes of ``big_body``) under the Content-Encoding list ``enc``."""
    encodings = _q(req, "enc", "gzip")
    size = int(_q(req, "size", "0"))
    await _send(
        w,
        encode_body(big_body(size) if size else RSS, encodings),
        headers={"Content-Type": "application/rss+xml", "Content-Encoding": encodings},
    )


def _redirect(location: str, status: str = "302 Found") -> bytes:
    return _head(status, {"Location": location}, length=0)


async def _redirect_loop(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(_redirect("/redirect-loop"))


async def _redirect_chain(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    remaining = int(req.path.rsplit("/", 1)[-1] or 0)
    if remaining <= 0:
        await _feed(srv, req, w)
    else:
        w.write(_redirect(f"/redirect-chain/{remaining - 1}", "301 Moved Permanently"))


async def _redirect_to(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(_redirect(_q(req, "url", "/feed"), _q(req, "status", "302") + " Redirect"))


async def _redirect_file(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(_redirect("file:///etc/hostname"))


async def _html(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(w, HTML, headers={"Content-Type": "text/html; charset=utf-8"})


async def _empty(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(w, b"", headers={"Content-Type": "application/rss+xml"})


async def _junk(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(w, os.urandom(4096), headers={"Content-Type": "application/rss+xml"})


async def _too_many(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(w, b"slow down", status="429 Too Many Requests", headers={"Retry-After": "3600"})


async def _unavailable(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    # Retry-After as an HTTP-date, two minutes ahead.
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    await _send(w, b"down", status="503 Service Unavailable", headers={"Retry-After": when})


async def _not_modified(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    etag = '"v1"'
    validators = {"ETag": etag, "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
    if req.headers.get("if-none-match") == etag:
        w.write(_head("304 Not Modified", validators))
    else:
        await _send(w, RSS, headers={"Content-Type": "application/rss+xml", **validators})


async def _etag_churn(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    etag = f'"{os.urandom(8).hex()}"'
    await _send(w, RSS, headers={"Content-Type": "application/rss+xml", "ETag": etag})


async def _truncated(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(_head("200 OK", {"Content-Type": "application/rss+xml"}, length=len(RSS) + 1000))
    w.write(RSS[:100])
    await w.drain()  # then the handler returns and the connection is closed


async def _rst_mid_body(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(_head("200 OK", {"Content-Type": "application/rss+xml"}, length=len(RSS)))
    w.write(RSS[:100])
    await w.drain()
    await asyncio.sleep(0.05)
    sock = w.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


async def _bad_chunk(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"10\r\n<rss version='2'\r\nzz\r\nnot a chunk size\r\n"
    )
    await w.drain()


async def _truncated_chunked(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    w.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"10\r\n<rss version='2'\r\n"  # and no terminating 0-size chunk
    )
    await w.drain()


async def _short_length(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    # Content-Length smaller than the body: the extra bytes must simply be ignored.
    w.write(_head("200 OK", {"Content-Type": "application/rss+xml"}, length=10) + RSS)


async def _dup_headers(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(
        w,
        RSS,
        headers=[
            ("Content-Type", "text/html"),
            ("Content-Type", "application/rss+xml"),
            ("ETag", '"a"'),
            ("ETag", '"b"'),
        ],
    )


def _typed(content_type: str, body: bytes) -> Handler:
    async def handler(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
        await _send(w, body, headers={"Content-Type": content_type})

    return handler


async def _hold(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await asyncio.sleep(float(_q(req, "ms", "200")) / 1000)
    await _send(w, RSS, headers={"Content-Type": "application/rss+xml"})


async def _status(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    code = req.path.rsplit("/", 1)[-1]
    await _send(w, b"status", status=f"{code} Status")


async def _not_found(srv: HostileServer, req: RecordedRequest, w: asyncio.StreamWriter) -> None:
    await _send(w, b"not found", status="404 Not Found")


ROUTES: dict[str, Handler] = {
    "/feed": _feed,
    "/echo": _echo,
    "/slowloris-headers": _slowloris_headers,
    "/slow-body": _slow_body,
    "/endless": _endless,
    "/gzip-bomb": _bomb_route("gzip"),
    "/deflate-bomb": _bomb_route("deflate"),
    "/br-bomb": _bomb_route("br"),
    "/zstd-bomb": _bomb_route("zstd"),
    "/double-gzip-bomb": _bomb_route("gzip, gzip"),
    "/gzip": _encoded_feed("gzip", gzip.compress(RSS)),
    "/deflate": _encoded_feed("deflate", zlib.compress(RSS)),
    "/double-gzip": _encoded_feed("gzip, gzip", gzip.compress(gzip.compress(RSS))),
    "/encoded": _encoded,
    "/unknown-encoding": _encoded_feed("compress", RSS),
    "/corrupt-gzip": _encoded_feed("gzip", b"\x1f\x8b\x08\x00" + b"\xff" * 200),
    "/cut-gzip": _encoded_feed("gzip", gzip.compress(RSS)[:-12]),
    "/redirect-loop": _redirect_loop,
    "/redirect-to": _redirect_to,
    "/redirect-file": _redirect_file,
    "/html": _html,
    "/empty": _empty,
    "/junk": _junk,
    "/429": _too_many,
    "/503": _unavailable,
    "/304": _not_modified,
    "/etag-churn": _etag_churn,
    "/truncated": _truncated,
    "/rst-mid-body": _rst_mid_body,
    "/bad-chunk": _bad_chunk,
    "/truncated-chunked": _truncated_chunked,
    "/short-length": _short_length,
    "/dup-headers": _dup_headers,
    "/pdf": _typed("application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"0" * 1000),
    "/png": _typed("image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 1000),
    "/video": _typed("video/mp4", b"\0" * 1000),
    "/octet": _typed("application/octet-stream", b"\0" * 1000),
    "/hold": _hold,
}
_PREFIX_ROUTES: dict[str, Handler] = {
    "/redirect-chain/": _redirect_chain,
    "/status/": _status,
}


def _route(path: str) -> Handler:
    if path in ROUTES:
        return ROUTES[path]
    for prefix, handler in _PREFIX_ROUTES.items():
        if path.startswith(prefix):
            return handler
    return _not_found


# --- the canary ------------------------------------------------------------------------------


class Canary(_LoopServer[CanaryHit]):
    """A loopback listener that records every connection it gets (harness H2).

    An SSRF test passes only if ``hits`` stays empty. It answers a minimal
    ``200`` so that a client that does reach it finishes quickly.
    """

    _thread_name = "canary"

    @property
    def hits(self) -> list[CanaryHit]:
        """Every connection received (the canary's recorded requests)."""
        return self.requests

    def clear(self) -> None:
        self.reset()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        hit_at = time.monotonic()
        try:
            line = await asyncio.wait_for(reader.readline(), 2)
        except (TimeoutError, ConnectionError, OSError):
            line = b""
        self.record(CanaryHit((str(peer[0]), int(peer[1])), line.decode("latin-1").strip(), hit_at))
        with contextlib.suppress(Exception):
            writer.write(_head("200 OK", {"Content-Type": "text/plain"}, length=6) + b"canary")
            await writer.drain()
            writer.close()


# --- a resolver that never touches DNS ---------------------------------------------------------


class StaticResolver(AbstractResolver):
    """Maps names to fixed addresses; unknown names fail like NXDOMAIN.

    A value may be a list of addresses, or a callable returning one per call
    (to simulate DNS rebinding). Every lookup is recorded in ``calls``.
    Only loopback addresses should be mapped, unless the test asserts the
    address is refused before any connection.
    """

    def __init__(self, table: Mapping[str, str | list[str] | Callable[[], list[str]]] | None = None) -> None:
        self.table = dict(table or {})
        self.calls: list[tuple[str, int]] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append((host, port))
        entry = self.table.get(host.rstrip(".").lower())
        if entry is None:
            raise OSError(socket.EAI_NONAME, f"StaticResolver: no such test host {host!r}")
        addresses = entry() if callable(entry) else [entry] if isinstance(entry, str) else entry
        results: list[ResolveResult] = []
        for addr in addresses:
            # "addr" may carry its own port ("127.0.0.1:8080") to model a rebinding answer.
            ip, _, port_text = addr.rpartition(":") if addr.count(":") == 1 else (addr, "", "")
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            results.append(
                {
                    "hostname": host,
                    "host": ip,
                    "port": int(port_text) if port_text else port,
                    "family": family,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None
