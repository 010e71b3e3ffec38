"""What keeps the workspace safe: where it may listen, who may read it, which
requests may write, and the headers every response carries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from monitor.errors import NewsmonError

TOKEN_ENV, USER_ENV, PASSWORD_ENV = "NEWSMON_WEB_TOKEN", "NEWSMON_WEB_USER", "NEWSMON_WEB_PASSWORD"
TOKEN_COOKIE = "newsmon_token"
CSRF_FIELD = "csrf"
FEED_KEY_PARAM = "key"  # /feeds/*.atom?key=<feed key>: for feed readers, which cannot log in
ATOM_PREFIX, ATOM_SUFFIX = "/feeds/", ".atom"

# No inline script or style anywhere: every asset is a file newsmon serves.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make a form POST's Origin "null"
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BindRefused(NewsmonError):
    """``newsmon web`` was asked to listen beyond loopback without credentials."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access token and/or a basic-auth user and password (from the environment)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if env is None else env
        return cls(token=env.get(TOKEN_ENV) or None, user=env.get(USER_ENV) or None,
                   password=env.get(PASSWORD_ENV) or None)

    @property
    def configured(self) -> bool:
        return bool(self.token or (self.user and self.password))

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.password, self.feed_key()) if s]

    def feed_key(self) -> str | None:
        """A read-only key for the Atom feeds alone, derived from the token (else the
        password): a feed URL saved in a reader app, a proxy log or a shared OPML file
        opens the feeds, never the pages, the playground or feedback. Changing the
        token or password changes it."""
        secret = self.token or (self.password if self.user else None)
        if not secret:
            return None
        return hmac.new(secret.encode(), b"newsmon atom feeds v1", hashlib.sha256).hexdigest()[:32]


def is_atom_path(path: str) -> bool:
    return path.startswith(ATOM_PREFIX) and path.endswith(ATOM_SUFFIX)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, credentials: Credentials) -> None:
    """Raise ``BindRefused`` unless ``host`` is loopback or credentials are set."""
    if is_loopback(host):
        return
    if credentials.token and len(credentials.token) < 16:
        raise BindRefused(f"{TOKEN_ENV} is too short to guard {host} (16 characters at least)")
    if credentials.configured:
        return
    raise BindRefused(
        f"refusing to listen on {host}: beyond loopback the workspace needs an access token"
        f" ({TOKEN_ENV}) or basic-auth credentials ({USER_ENV} and {PASSWORD_ENV}) in the"
        " environment; or put a reverse proxy with authentication in front of 127.0.0.1")


def _same(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def authorised(request: web.Request, credentials: Credentials) -> bool:
    """True when no credentials are configured, or the request carries them."""
    if not credentials.configured:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and _same(value.strip(), credentials.token):
        return True
    if scheme.lower() == "basic" and credentials.user and credentials.password:
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return _same(user, credentials.user) and _same(password, credentials.password)
    return _same(request.cookies.get(TOKEN_COOKIE), credentials.token)


def auth_middleware(credentials: Credentials) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if credentials.token and _same(request.query.get("token"), credentials.token):
            # A link with ?token= logs a browser in: the token moves to a cookie and
            # leaves the address bar (and the history).
            kept = {k: v for k, v in request.query.items() if k != "token"}
            response = web.HTTPSeeOther(str(request.rel_url.with_query(kept)))
            response.set_cookie(TOKEN_COOKIE, credentials.token, httponly=True, samesite="Strict",
                                secure=request.secure)
            raise response
        feed_key = credentials.feed_key()
        if (feed_key and is_atom_path(request.path)
                and _same(request.query.get(FEED_KEY_PARAM), feed_key)):
            return await handler(request)
        if not authorised(request, credentials):
            headers = {"WWW-Authenticate": 'Basic realm="newsmon"'} if credentials.user else {}
            return web.Response(status=401, text="authentication required", headers=headers)
        return await handler(request)

    return middleware


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        if name == "Cache-Control" and request.path.startswith("/static/"):
            continue  # the assets may be cached; pages never
        response.headers.setdefault(name, value)


class Csrf:
    """A per-process token in every form, and the request's origin checked on POST."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)

    def check(self, request: web.Request, form: Mapping[str, object]) -> str | None:
        """None when the POST may proceed, else why not."""
        given = form.get(CSRF_FIELD)
        if not isinstance(given, str) or not _same(given, self.token):
            return "missing or wrong form token"
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin == "null" or urlsplit(origin).netloc != request.host:
                return "cross-site request"
        elif request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request"
        return None
