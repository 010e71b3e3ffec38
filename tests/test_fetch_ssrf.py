"""Fetch stage, egress guard: hostile-inputs.md section B (cases 13-18).

Every SSRF test passes only if the canary listener (harness H2) saw nothing. A
socket-level tripwire additionally fails any test in which the process tries to
connect anywhere but loopback, so a broken guard cannot reach a real network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from monitor.ingest.fetch import Fetcher
from monitor.ingest.netguard import EgressPolicy, GuardedResolver, numeric_host
from monitor.models import FetchError, FetchResult
from tests.helpers.fetching import TIMEOUT, Outcome, loopback_policy, timed_fetch
from tests.helpers.hostile import RSS, Canary, HostileServer, StaticResolver

pytestmark = pytest.mark.timeout(30)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def _canary() -> Iterator[Canary]:
    with Canary() as c:
        yield c


@pytest.fixture
def canary(_canary: Canary, server: HostileServer) -> Iterator[Canary]:
    """The canary, emptied before the test and required to be empty after it."""
    _canary.clear()
    server.reset()
    yield _canary
    assert _canary.hits == [], f"the canary was reached: {_canary.hits}"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Tripwire: refuse (and record) any connect() to a non-loopback address."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            ip = ipaddress.ip_address(str(host).split("%", 1)[0])
            if not ip.is_loopback:
                attempts.append(address)
                raise ConnectionRefusedError(f"tripwire: non-loopback connect to {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
    assert attempts == [], f"tried to connect outside loopback: {attempts}"


@pytest.fixture
def policy(server: HostileServer) -> EgressPolicy:
    """Harness H3: exactly 127.0.0.1:<hostile port>, nothing else (not the canary)."""
    return loopback_policy(server.port)


def fetch(
    url: str, *, policy: EgressPolicy, resolver: StaticResolver | None = None, **kw: Any,
) -> Outcome:
    start = time.monotonic()
    out, _ = timed_fetch(url, policy=policy, resolver=resolver, **kw)
    assert time.monotonic() - start < TIMEOUT, "a refused fetch must not wait for anything"
    return out


def blocked(out: Outcome, kind: str = "blocked", text: str | None = None) -> FetchError:
    assert isinstance(out, FetchError), f"expected a refusal, got {out!r}"
    assert out.kind == kind, f"expected {kind}, got {out.kind}: {out}"
    if text is not None:
        assert text in str(out)
    return out


# --- the policy itself -------------------------------------------------------------------

DENIED_BY_DEFAULT = [
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.5", "172.16.0.1",
    "172.31.255.255", "192.168.1.1", "169.254.169.254", "169.254.1.1", "100.64.0.1",
    "100.127.255.254", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.19.255.255",
    "198.51.100.1", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255", "::", "::1", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::808:808", "64:ff9b:1::a00:5", "2002:7f00:1::", "2002:808:808::1",
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1", "fc00::1", "fd12:3456::1",
    "fd00:ec2::254", "fe80::1", "fec0::1", "ff02::1", "100::1",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", DENIED_BY_DEFAULT)
def test_default_policy_denies(address: str) -> None:
    ip = ipaddress.ip_address(address)
    policy = EgressPolicy()
    assert not policy.is_allowed(ip, 80)
    with pytest.raises(FetchError) as info:
        policy.check(ip, 80)
    assert info.value.kind == "blocked"
    assert str(info.value).startswith("blocked non-public address")


def test_nat64_and_6to4_are_global_on_this_python() -> None:
    """Why an explicit deny list is needed: is_global alone would let these through."""
    assert (
        ipaddress.ip_address("64:ff9b::7f00:1").is_global or ipaddress.ip_address("2002:7f00:1::").is_global
    )
    assert not EgressPolicy().is_allowed(ipaddress.ip_address("64:ff9b::7f00:1"), 80)


@pytest.mark.parametrize("address", PUBLIC)
def test_default_policy_allows_public(address: str) -> None:
    assert EgressPolicy().is_allowed(ipaddress.ip_address(address), 443)


def test_allow_private_opens_private_networks_only() -> None:
    private = EgressPolicy().with_private()
    assert private.allow_private and not EgressPolicy().allow_private
    for address in ["127.0.0.1", "10.0.0.5", "192.168.1.1", "100.64.0.1", "::1", "fd12::1", "169.254.1.1"]:
        assert private.is_allowed(ipaddress.ip_address(address), 80), address
    for address in ["169.254.169.254", "fd00:ec2::254", "0.0.0.0", "::", "224.0.0.1", "64:ff9b::a00:5"]:
        assert not private.is_allowed(ipaddress.ip_address(address), 80), address


def test_allowed_networks_and_ports() -> None:
    policy = EgressPolicy(allowed_networks=["127.0.0.0/8"], allowed_ports=[80, 443, 8080, 8443])
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.2"), 8080)
    assert not policy.is_allowed(ipaddress.ip_address("127.0.0.2"), 6379)
    assert not policy.is_allowed(ipaddress.ip_address("8.8.8.8"), 25)
    assert not policy.is_allowed(ipaddress.ip_address("10.0.0.1"), 80)
    with pytest.raises(FetchError, match="blocked port"):
        policy.check(ipaddress.ip_address("8.8.8.8"), 6379)
    # The opt-in keeps the operator's lists.
    assert not policy.with_private().is_allowed(ipaddress.ip_address("10.0.0.1"), 6379)
    assert policy.with_private().is_allowed(ipaddress.ip_address("10.0.0.1"), 443)


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::]", "::"),
        ("feed.test", None),
        ("localhost", None),
    ],
)
def test_numeric_host_spellings(spelling: str, address: str | None) -> None:
    expected = None if address is None else ipaddress.ip_address(address)
    assert numeric_host(spelling) == expected


# --- B13: links to internal addresses ---------------------------------------------------------


def test_item_links_to_internal_addresses_refused(canary: Canary, server: HostileServer) -> None:
    links = [
        "http://169.254.169.254/latest/meta-data/",
        f"http://127.0.0.1:{canary.port}/",
        f"http://[::1]:{canary.port}/",
        "http://10.0.0.5/",
        f"http://localhost.test:{canary.port}/",  # a name that resolves to loopback
    ]
    resolver = StaticResolver({"localhost.test": "127.0.0.1"})
    for link in links:
        out = fetch(link, policy=EgressPolicy(), resolver=resolver, kind="page")
        blocked(out, text="blocked non-public address")
    assert server.requests == []


def test_policy_allowing_only_the_hostile_port_refuses_the_canary(
    canary: Canary, server: HostileServer, policy: EgressPolicy
) -> None:
    ok = fetch(f"http://127.0.0.1:{server.port}/feed", policy=policy)
    assert isinstance(ok, FetchResult) and ok.content == RSS  # the positive control
    blocked(fetch(canary.url("/"), policy=policy))


# --- B14: alternative spellings -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0", "[::ffff:127.0.0.1]", "[::]"]
)
def test_alternative_ip_spellings_refused(canary: Canary, host: str) -> None:
    # The default policy, and the canary listening on the address each spelling denotes.
    out = fetch(f"http://{host}:{canary.port}/", policy=EgressPolicy(), resolver=StaticResolver())
    blocked(out, text="blocked non-public address")


# --- B15: IPv6 transition prefixes embedding IPv4 -------------------------------------------------


@pytest.mark.parametrize(
    "address", ["64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::1", "2001:0:7f00:1::1", "::ffff:7f00:1"]
)
def test_transition_prefixes_refused(canary: Canary, address: str) -> None:
    # As a DNS answer...
    resolver = StaticResolver({"evil.test": address})
    blocked(fetch(f"http://evil.test:{canary.port}/", policy=EgressPolicy(), resolver=resolver))
    # ...and as a URL literal.
    blocked(fetch(f"http://[{address}]:{canary.port}/", policy=EgressPolicy(), resolver=resolver))


# --- B16: DNS rebinding ---------------------------------------------------------------------------


def _two_faced(first: list[str], later: list[str]) -> Callable[[], list[str]]:
    """A DNS answer that changes after the first lookup."""
    calls = {"n": 0}

    def answer() -> list[str]:
        calls["n"] += 1
        return first if calls["n"] == 1 else later

    return answer


def test_dns_rebinding_connection_pinned_to_vetted_address(
    canary: Canary, server: HostileServer, policy: EgressPolicy
) -> None:
    """The first answer is vetted and used; a later answer (the canary) is never connected to.

    A client that checked one lookup and then let the connector look up again
    would connect to the canary here.
    """
    resolver = StaticResolver({"rebind.test": _two_faced(["127.0.0.1"], [f"127.0.0.1:{canary.port}"])})
    out = fetch(f"http://rebind.test:{server.port}/feed", policy=policy, resolver=resolver)
    assert isinstance(out, FetchResult) and out.content == RSS
    assert len(resolver.calls) == 1
    assert server.paths() == ["/feed"]


def test_dns_rebinding_every_lookup_vetted(
    canary: Canary, server: HostileServer, policy: EgressPolicy
) -> None:
    """Each lookup is checked: when the name flips to a denied address, the fetch is refused."""
    resolver = StaticResolver({"rebind.test": _two_faced(["127.0.0.1"], [f"127.0.0.1:{canary.port}"])})

    async def go() -> list[Outcome]:
        outcomes: list[Outcome] = []
        for _ in range(2):  # a fresh Fetcher each time: no DNS cache carried over
            async with Fetcher(policy=policy, resolver=resolver, timeout=TIMEOUT) as f:
                try:
                    outcomes.append(await f.fetch(f"http://rebind.test:{server.port}/feed"))
                except FetchError as exc:
                    outcomes.append(exc)
        return outcomes

    first, second = asyncio.run(go())
    assert isinstance(first, FetchResult)
    blocked(second)
    assert len(resolver.calls) == 2


def test_mixed_answer_only_vetted_addresses_used(
    canary: Canary, server: HostileServer, policy: EgressPolicy
) -> None:
    resolver = StaticResolver({"mixed.test": [f"127.0.0.1:{canary.port}", "127.0.0.1"]})
    out = fetch(f"http://mixed.test:{server.port}/feed", policy=policy, resolver=resolver)
    assert isinstance(out, FetchResult) and out.content == RSS


def test_guarded_resolver_directly() -> None:
    async def go() -> None:
        inner = StaticResolver({"a.test": ["10.0.0.1", "8.8.8.8"], "b.test": "192.168.0.1"})
        guard = GuardedResolver(EgressPolicy(), inner)
        answers = await guard.resolve("a.test", 443)
        assert [a["host"] for a in answers] == ["8.8.8.8"]
        with pytest.raises(FetchError, match=r"blocked non-public address 192\.168\.0\.1:443"):
            await guard.resolve("b.test", 443)
        with pytest.raises(FetchError, match="blocked non-public address"):
            await guard.resolve("2130706433", 80)  # parsed locally, never sent to DNS
        assert [h for h, _ in inner.calls] == ["a.test", "b.test"]
        with pytest.raises(OSError):
            await guard.resolve("nxdomain.test", 80)
        await guard.close()

    asyncio.run(go())


# --- B17: redirects to blocked addresses ----------------------------------------------------------


def test_redirect_to_canary_refused(canary: Canary, server: HostileServer, policy: EgressPolicy) -> None:
    resolver = StaticResolver({"feed.test": "127.0.0.1"})
    out = fetch(
        f"http://feed.test:{server.port}/redirect-to?url={canary.url('/stolen')}",
        policy=policy,
        resolver=resolver,
    )
    blocked(out)
    assert server.paths() == ["/redirect-to"]


def test_redirect_to_other_host_rechecked(canary: Canary, server: HostileServer) -> None:
    # The first host is public-by-policy; the redirect goes to a name resolving to the canary.
    pol = EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[server.port])
    resolver = StaticResolver({"feed.test": "127.0.0.1", "evil.test": f"127.0.0.1:{canary.port}"})
    target = f"http://evil.test:{server.port}/"
    out = fetch(f"http://feed.test:{server.port}/redirect-to?url={target}", policy=pol, resolver=resolver)
    blocked(out)
    assert ("evil.test", server.port) in resolver.calls


def test_redirect_to_metadata_literal_refused(
    canary: Canary, server: HostileServer, policy: EgressPolicy
) -> None:
    url = f"http://127.0.0.1:{server.port}/redirect-to?url=http://169.254.169.254/latest/meta-data/"
    blocked(fetch(url, policy=policy), text="blocked non-public address")


# --- B18: schemes and ports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/etc/passwd",
        "feed://feed.test/rss",
        "ftp://127.0.0.1/feed",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "data:text/xml,<rss/>",
        "http:///nohost",
        "http://[::1",
    ],
)
def test_non_http_urls_refused(canary: Canary, server: HostileServer, policy: EgressPolicy, url: str) -> None:
    blocked(fetch(url, policy=policy, resolver=StaticResolver({"feed.test": "127.0.0.1"})))
    assert server.requests == []


def test_port_allow_list(canary: Canary, server: HostileServer) -> None:
    pol = EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[80, 443, 8080, 8443])
    resolver = StaticResolver({"feed.test": "127.0.0.1"})
    blocked(fetch(f"http://feed.test:{server.port}/feed", policy=pol, resolver=resolver), text="port")
    assert server.requests == []


def test_config_feed_allow_private_opt_in(canary: Canary, server: HostileServer) -> None:
    """An internal feed needs allow_private; links (allow_private=False) stay refused."""
    pol = EgressPolicy(allowed_ports=[server.port])  # no operator allow-list
    resolver = StaticResolver({"intranet.test": "127.0.0.1"})
    url = f"http://intranet.test:{server.port}/feed"

    async def go() -> tuple[Outcome, Outcome, Outcome]:
        async with Fetcher(policy=pol, resolver=resolver, timeout=TIMEOUT) as f:
            results: list[Outcome] = []
            for allow in (False, True, False):  # the same Fetcher: no pooled connection leaks across
                try:
                    results.append(await f.fetch(url, allow_private=allow))
                except FetchError as exc:
                    results.append(exc)
            return results[0], results[1], results[2]

    before, opted_in, after = asyncio.run(go())
    blocked(before, text="blocked non-public address")
    assert isinstance(opted_in, FetchResult) and opted_in.content == RSS
    blocked(after, text="blocked non-public address")
    assert server.paths() == ["/feed"]


# --- proxy ---------------------------------------------------------------------------------------------


def test_proxy_used_and_not_ssrf_checked(canary: Canary, server: HostileServer) -> None:
    """The operator's proxy is on loopback, which the default policy denies: it is still used."""
    out = fetch(
        "http://remote.test/feed", policy=EgressPolicy(), proxy=server.url("/"), resolver=StaticResolver()
    )
    assert isinstance(out, FetchResult) and out.content == RSS
    req = server.requests[-1]
    assert req.proxied and req.target == "http://remote.test/feed"


def test_proxy_target_still_checked(canary: Canary, server: HostileServer) -> None:
    for url in ["file:///etc/passwd", "http://10.0.0.5/", "http://169.254.169.254/latest/", "ftp://x.test/"]:
        blocked(fetch(url, policy=EgressPolicy(), proxy=server.url("/"), resolver=StaticResolver()))
    assert server.requests == []
