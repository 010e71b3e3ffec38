"""``newsmon web``: the analyst's workspace, server-rendered (aiohttp + Jinja2).

Read-only on the database (a ``mode=ro`` connection) except for feedback;
safe by default (loopback only without credentials, autoescaped pages, a strict
Content-Security-Policy, CSRF-checked POSTs). See ``docs/web.md``.
"""

from monitor.web.app import WebSettings, create_app, serve
from monitor.web.security import BindRefused, check_bind

__all__ = ["BindRefused", "WebSettings", "check_bind", "create_app", "serve"]
