"""One fetch with a fresh ``Fetcher`` against the hostile server, for the fetch-stage tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from monitor.ingest.fetch import Fetcher
from monitor.ingest.netguard import EgressPolicy
from monitor.models import FetchError, FetchResult
from tests.helpers.hostile import StaticResolver

Outcome = FetchResult | FetchError
TIMEOUT = 2.0  # the per-request deadline the fetch-stage tests use


def loopback_policy(port: int) -> EgressPolicy:
    """Harness H3: exactly 127.0.0.1:<port>, nothing else."""
    return EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[port])


def timed_fetch(
    url: str,
    *,
    policy: EgressPolicy,
    resolver: StaticResolver | None = None,
    fetcher: dict[str, Any] | None = None,
    **kw: Any,
) -> tuple[Outcome, float]:
    """The result or the FetchError, and the seconds the fetch itself took.

    ``fetcher`` holds Fetcher options (``timeout`` defaults to ``TIMEOUT``); ``kw``
    goes to ``fetch``."""

    async def go() -> tuple[Outcome, float]:
        opts: dict[str, Any] = {"timeout": TIMEOUT, **(fetcher or {})}
        async with Fetcher(policy=policy, resolver=resolver, **opts) as f:
            start = time.monotonic()
            try:
                out: Outcome = await f.fetch(url, **kw)
            except FetchError as exc:
                out = exc
            return out, time.monotonic() - start

    return asyncio.run(go())
