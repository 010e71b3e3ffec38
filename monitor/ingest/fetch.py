"""The fetch stage: a hardened HTTP client for feeds and article pages.

What it guarantees, per request (see docs/spec hostile-inputs A and B):

* a **total** deadline over connect, headers and body, across redirects;
* a byte cap applied **after** decompression, incrementally (gzip, deflate,
  br, zstd, and stacked encodings: ``monitor.ingest.decoding``), so a bomb or an
  endless body never grows memory past the cap; unsupported encodings are rejected;
* redirects followed by hand (at most ``max_redirects``), every hop re-checked:
  http/https only, no https→http downgrade, and the egress policy applied to
  the resolved address of every hop at connect time (see ``monitor.ingest.netguard``);
* certificate checks always on, never an insecure retry;
* a truncated body is an error, never a short result;
* a global and a per-host concurrency limit.

Every failure is a :class:`~monitor.models.FetchError` with a ``kind``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from datetime import datetime
from types import TracebackType
from typing import Final, Literal

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from monitor.ingest.decoding import ACCEPT_ENCODING, BodyDecoder, Corrupt, Overflow, layers_for
from monitor.ingest.httpdates import retry_after_seconds
from monitor.ingest.netguard import EgressPolicy, GuardedResolver, numeric_host
from monitor.models import FetchError, FetchResult

__all__ = ["DEFAULT_USER_AGENT", "Fetcher", "mask_url", "parse_retry_after"]

DEFAULT_USER_AGENT: Final = "newsmon/0.1 (+https://github.com/newsmon)"
_ACCEPT: Final[dict[str, str]] = {
    "feed": (
        "application/rss+xml, application/atom+xml, application/feed+json, "
        "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
    ),
    "page": "text/html, application/xhtml+xml;q=0.9, text/*;q=0.8, */*;q=0.5",
}
_ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_MAX_RETRY_AFTER: Final = 6 * 3600.0  # never wait longer than 6 h on a server's say-so
# Headers a cross-origin redirect must not carry to the new origin.
_CREDENTIAL_HEADERS: Final = ("authorization", "cookie", "proxy-authorization")
_SECRET_PARAM: Final = re.compile(
    r"(token|key|secret|pass|auth|sig|session|sid|cred|code|jwt|bearer)", re.IGNORECASE
)

FetchKind = Literal["feed", "page"]


# --- small helpers ------------------------------------------------------------


def mask_url(url: str | URL) -> str:
    """The URL for logs and messages: userinfo and secret-looking query values masked."""
    try:
        u = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        return "<invalid URL>"
    had_userinfo = u.raw_user is not None or u.raw_password is not None
    if had_userinfo:
        u = u.with_user(None)  # drops the password too
    if u.raw_query_string:
        query = [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in u.query.items()]
        u = u.with_query(query)
    text = str(u)
    if had_userinfo and "://" in text:
        scheme, rest = text.split("://", 1)
        text = f"{scheme}://***@{rest}"
    return _one_line(text)


def _one_line(text: str, limit: int = 500) -> str:
    """Collapse whitespace (server-provided text may contain newlines) and bound length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped at 6 h."""
    seconds = retry_after_seconds(value, now=now)
    return None if seconds is None else min(seconds, _MAX_RETRY_AFTER)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _page_type_acceptable(media_type: str) -> bool:
    """Whether an article response could be a web page worth reading.

    Missing types, ``text/*`` and XML/HTML flavours pass; everything else
    (pdf, images, video, audio, octet-stream, archives, fonts...) does not.
    """
    if not media_type or media_type.startswith("text/"):
        return True
    return media_type.endswith(("/html", "/xhtml+xml", "/xml", "+xml"))


def _server_key(url: URL) -> str:
    """What the per-server limit counts by: host and port (two servers on one address
    are two servers)."""
    return f"{(url.host or '').lower()}:{url.port}"


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.port)


def _check_scheme(url: URL, *, what: str) -> None:
    if url.scheme not in _ALLOWED_SCHEMES or not url.raw_host:
        raise FetchError(
            f"blocked {what} with scheme {url.scheme or 'none'!r}: {mask_url(url)} "
            "(only http and https URLs with a host are fetched)",
            kind="blocked" if what == "URL" else "redirects",
        )


def redirect_target(current: URL, location: str) -> URL:
    """The URL a redirect points to, or ``FetchError(kind="redirects")`` if refused.

    Refuses non-http(s) schemes (file:, ftp:, gopher:, data:, javascript:...)
    and an https→http downgrade.
    """
    try:
        target = current.join(URL(location.strip()))
    except (ValueError, TypeError) as exc:
        raise FetchError(
            f"refused redirect from {mask_url(current)} to an invalid URL", kind="redirects"
        ) from exc
    _check_scheme(target, what="redirect")
    if current.scheme == "https" and target.scheme == "http":
        raise FetchError(
            f"refused https->http downgrade redirect from {mask_url(current)} to {mask_url(target)}",
            kind="redirects",
        )
    return target


# --- concurrency ---------------------------------------------------------------


class _HostSlots:
    """One semaphore per host name, dropped again when idle (no unbounded growth)."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        sem, users = self._slots.setdefault(host, (asyncio.Semaphore(self._per_host), [0]))
        users[0] += 1
        try:
            async with sem:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._slots.pop(host, None)


# --- the fetcher ---------------------------------------------------------------------


_SessionKey = tuple[str, bool]  # ("direct", allow_private) or ("proxy", False)


class Fetcher:
    """Fetches feeds and pages under a hardened policy. One instance per daemon.

    Build it anywhere; the aiohttp sessions are created lazily inside the
    running loop. Close it with ``await fetcher.aclose()`` or ``async with``.

    Sessions: one per egress mode (public, private opt-in, via proxy), each with
    its own connection pool, so a kept-alive connection to an address vetted
    for an ``allow_private`` feed is never reused by a public-only request.
    """

    def __init__(
        self,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: float = 30.0,
        max_bytes: int = 5 * 1024 * 1024,
        max_redirects: int = 5,
        concurrency: int = 20,
        per_host: int = 4,
        policy: EgressPolicy | None = None,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes <= 0 or max_redirects < 0:
            raise ValueError("timeout and max_bytes must be positive, max_redirects >= 0")
        if concurrency < 1 or per_host < 1:
            raise ValueError("concurrency and per_host must be at least 1")
        if ssl_context is not None and (
            ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname
        ):
            # A context may add trusted CAs (tests, private CAs); it may never switch checks off.
            raise ValueError("ssl_context must verify certificates and host names")
        self._user_agent = user_agent
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._concurrency = concurrency
        self._policy = policy or EgressPolicy()
        self._private_policy = self._policy.with_private()
        self._resolver = resolver
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        self._sessions: dict[_SessionKey, aiohttp.ClientSession] = {}
        # Bound to the loop on first use, not here: building the Fetcher needs no loop.
        self._global = asyncio.Semaphore(concurrency)
        self._hosts = _HostSlots(per_host)
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every session (and its connections). Idempotent."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _session(self, key: _SessionKey) -> aiohttp.ClientSession:
        """The session for an egress mode, created on first use inside the loop."""
        session = self._sessions.get(key)
        if session is None or session.closed:
            mode, allow_private = key
            policy = None if mode == "proxy" else self._policy_for(allow_private)
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(policy, self._resolver),
                ssl=self._ssl,
                limit=self._concurrency,
                limit_per_host=0,  # per-host limiting is done by _HostSlots
                ttl_dns_cache=10,  # cached answers are vetted ones: still pinned
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # The total deadline is enforced by asyncio.timeout in fetch().
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,  # decoded here, under the byte cap
                cookie_jar=aiohttp.DummyCookieJar(),  # no cookies leak between feeds
                trust_env=False,  # no proxy from the environment bypassing the guard
            )
            self._sessions[key] = session
        return session

    def _policy_for(self, allow_private: bool) -> EgressPolicy:
        return self._private_policy if allow_private else self._policy

    # -- the one public operation

    async def fetch(
        self,
        url: str,
        *,
        kind: FetchKind = "feed",
        etag: str | None = None,
        last_modified: str | None = None,
        allow_private: bool = False,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        proxy: str | None = None,
        max_bytes: int | None = None,
    ) -> FetchResult:
        """GET ``url`` and return the decoded body, or raise ``FetchError``.

        2xx → ``FetchResult``; 304 → ``FetchResult(not_modified=True)``;
        anything else raises ``FetchError`` with a ``kind``.
        """
        if self._closed:
            raise RuntimeError("Fetcher is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            # Sessions and semaphores belong to one loop; sharing them across loops hangs.
            raise RuntimeError("a Fetcher must be used from a single event loop")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        try:
            start_url = URL(url.strip())
        except (ValueError, TypeError) as exc:
            raise FetchError(f"blocked invalid URL {mask_url(url)}", kind="blocked") from exc
        _check_scheme(start_url, what="URL")
        request_headers = self._request_headers(kind, etag, last_modified, headers, cookies)
        cap = self._max_bytes if max_bytes is None else max_bytes
        # Waiting for a free slot is queueing, not the server's slowness: the
        # deadline starts once the request may go out. The server's own slot is
        # taken first, then a global one: requests queued behind a slow server
        # wait without holding global slots, so one tarpit cannot starve the others.
        async with self._hosts.slot(_server_key(start_url)), self._global:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._follow(
                        start_url,
                        kind=kind,
                        headers=request_headers,
                        allow_private=allow_private,
                        proxy=proxy,
                        max_bytes=cap,
                        started=started,
                    )
            except TimeoutError as exc:
                raise FetchError(
                    f"timed out after {self._timeout:g}s fetching {mask_url(url)}",
                    kind="timeout",
                ) from exc

    def _request_headers(
        self,
        kind: FetchKind,
        etag: str | None,
        last_modified: str | None,
        extra: Mapping[str, str] | None,
        cookies: Mapping[str, str] | None,
    ) -> CIMultiDict[str]:
        out: CIMultiDict[str] = CIMultiDict({"User-Agent": self._user_agent, "Accept": _ACCEPT[kind]})
        for name, value in (extra or {}).items():
            out[name] = value
        # Always ours: the decoders below define what can be read safely.
        out["Accept-Encoding"] = ACCEPT_ENCODING
        if etag:
            out["If-None-Match"] = etag
        if last_modified:
            out["If-Modified-Since"] = last_modified
        if cookies:
            # Sent as a plain header: no cookie jar, so nothing persists between feeds.
            out["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        for name, value in out.items():
            if any(c in name + value for c in "\r\n\0"):
                raise FetchError(f"refused header {name!r} containing a line break", kind="blocked")
        return out

    async def _follow(
        self,
        url: URL,
        *,
        kind: FetchKind,
        headers: CIMultiDict[str],
        allow_private: bool,
        proxy: str | None,
        max_bytes: int,
        started: float,
    ) -> FetchResult:
        """Request ``url``, following at most ``max_redirects`` redirects by hand."""
        policy = self._policy_for(allow_private)
        first = url
        key: _SessionKey = ("proxy", False) if proxy else ("direct", allow_private)
        for hop in range(self._max_redirects + 1):
            self._precheck(url, policy)
            # The first server's slot is already held (fetch); a redirect to another takes its own.
            same_server = _server_key(url) == _server_key(first)
            async with nullcontext() if same_server else self._hosts.slot(_server_key(url)):
                outcome = await self._one_request(
                    url, key, headers, kind=kind, proxy=proxy, max_bytes=max_bytes, started=started
                )
            if isinstance(outcome, FetchResult):
                return outcome
            target = outcome
            if hop == self._max_redirects:
                break
            if _origin(target) != _origin(url):
                # Credentials meant for one origin must not follow a redirect elsewhere.
                headers = headers.copy()
                for name in _CREDENTIAL_HEADERS:
                    headers.popall(name, None)
            url = target
        raise FetchError(
            f"too many redirects (more than {self._max_redirects}) fetching {mask_url(first)}",
            kind="redirects",
        )

    def _precheck(self, url: URL, policy: EgressPolicy) -> None:
        """Checks that need no DNS: the port, and the address of a numeric host.

        aiohttp connects to an IP-literal host without asking the resolver,
        so literals are vetted here (they cannot change between check and connect).
        Names are vetted by the GuardedResolver at connect time.
        """
        port = url.port or (443 if url.scheme == "https" else 80)
        ip = numeric_host(url.raw_host or "")
        if ip is not None:
            policy.check(ip, port, host=url.raw_host)
        if not policy.port_allowed(port):
            raise FetchError(f"blocked port {port} in {mask_url(url)}", kind="blocked")

    async def _one_request(
        self,
        url: URL,
        key: _SessionKey,
        headers: CIMultiDict[str],
        *,
        kind: FetchKind,
        proxy: str | None,
        max_bytes: int,
        started: float,
    ) -> FetchResult | URL:
        """One HTTP exchange: a result, or the URL a redirect points to."""
        session = self._session(key)
        try:
            async with session.get(url, headers=headers, allow_redirects=False, proxy=proxy) as resp:
                if resp.status in _REDIRECT_STATUSES and resp.headers.get("Location"):
                    return redirect_target(url, resp.headers["Location"])
                return await self._read_response(
                    resp, url, kind=kind, sent=headers, max_bytes=max_bytes, started=started
                )
        except (FetchError, TimeoutError):
            raise  # ours already; or the deadline, handled by fetch()
        except (aiohttp.ClientSSLError, ssl.SSLError, aiohttp.ServerFingerprintMismatch) as exc:
            raise FetchError(
                f"TLS failure for {mask_url(url)}: {_one_line(str(exc), 200)}", kind="tls"
            ) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError(
                f"cannot resolve host of {mask_url(url)}: {_one_line(str(exc.os_error), 200)}",
                kind="connection",
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise FetchError(
                f"truncated or malformed body from {mask_url(url)}: {_one_line(str(exc), 200)}",
                kind="connection",
            ) from exc
        except aiohttp.InvalidURL as exc:
            raise FetchError(f"blocked invalid URL {mask_url(url)}", kind="blocked") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(
                f"connection failed for {mask_url(url)}: {type(exc).__name__}: {_one_line(str(exc), 200)}",
                kind="connection",
            ) from exc

    async def _read_response(
        self,
        resp: aiohttp.ClientResponse,
        url: URL,
        *,
        kind: FetchKind,
        sent: CIMultiDict[str],
        max_bytes: int,
        started: float,
    ) -> FetchResult:
        """Turn a non-redirect response into a result or a FetchError."""
        headers = _flat_headers(resp.headers)
        # Read from the flattened headers so a duplicated header means the same
        # thing everywhere (the last value wins).
        media_type = _media_type(headers.get("content-type"))
        etag = headers.get("etag")
        last_modified = headers.get("last-modified")
        if resp.status == 304:
            return FetchResult(
                url=str(url),
                status=304,
                content=b"",
                content_type=media_type,
                headers=headers,
                etag=etag or sent.get("If-None-Match"),
                last_modified=last_modified or sent.get("If-Modified-Since"),
                not_modified=True,
                elapsed=time.monotonic() - started,
            )
        if not 200 <= resp.status < 300:
            raise FetchError(
                f"HTTP {resp.status} {_one_line(resp.reason or '', 80)} from {mask_url(url)}",
                kind="http_status",
                status=resp.status,
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        if kind == "page" and not _page_type_acceptable(media_type):
            raise FetchError(f"not a web page ({media_type}) at {mask_url(url)}", kind="bad_content_type")
        content = await self._read_body(resp, url, max_bytes)
        return FetchResult(
            url=str(url),
            status=resp.status,
            content=content,
            content_type=media_type,
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            elapsed=time.monotonic() - started,
        )

    async def _read_body(self, resp: aiohttp.ClientResponse, url: URL, max_bytes: int) -> bytes:
        """Stream and decode the body, aborting as soon as the cap is passed."""
        encoding = ",".join(resp.headers.getall("Content-Encoding", []))
        try:
            layers = layers_for(encoding)
        except ValueError as exc:
            raise FetchError(f"{exc} from {mask_url(url)}", kind="bad_encoding") from exc
        too_large = FetchError(
            f"response too large (over {max_bytes} bytes decoded) from {mask_url(url)}",
            kind="too_large",
        )
        declared = resp.content_length
        if not layers and declared is not None and declared > max_bytes:
            raise too_large  # no need to read what is announced as too big
        decoder = BodyDecoder(layers, max_bytes)
        try:
            async for chunk in resp.content.iter_any():
                decoder.feed(chunk)
            return decoder.finish()
        except Overflow:
            resp.close()  # drop the connection: the rest of the body is unwanted
            raise too_large from None
        except Corrupt as exc:
            resp.close()
            raise FetchError(
                f"corrupt {encoding} body from {mask_url(url)}: {_one_line(str(exc), 120)}",
                kind="bad_encoding",
            ) from None


def _flat_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Lower-cased header names; for a repeated header the last value wins."""
    return {name.lower(): value for name, value in headers.items()}
