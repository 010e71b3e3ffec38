"""Fetch stage, transport behaviour: hostile-inputs.md section A (cases 1-12).

Every test talks only to the hostile server on 127.0.0.1 (harness H1) through a
fake resolver (H3); no real DNS. Each asserts the error kind and that it ends fast.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.ingest.decoding import BodyDecoder, Overflow, layers_for
from monitor.ingest.fetch import (
    Fetcher,
    mask_url,
    parse_retry_after,
    redirect_target,
)
from monitor.ingest.netguard import EgressPolicy
from monitor.models import FetchError, FetchResult
from tests.helpers.fetching import TIMEOUT, Outcome, loopback_policy
from tests.helpers.fetching import timed_fetch as fetch  # (outcome, seconds the fetch took)
from tests.helpers.hostile import RSS, HostileServer, StaticResolver, big_body, encode_body
from tests.helpers.loopback import free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(30)


# --- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: HostileServer) -> None:
    server.reset()


@pytest.fixture
def resolver() -> StaticResolver:
    return StaticResolver({"feed.test": "127.0.0.1", "other.test": "127.0.0.1", "evil.test": "127.0.0.1"})


@pytest.fixture
def policy(server: HostileServer) -> EgressPolicy:
    """Allows exactly 127.0.0.1:<hostile port> (harness H3)."""
    return loopback_policy(server.port)


def expect_error(outcome: Outcome, kind: str) -> FetchError:
    assert isinstance(outcome, FetchError), f"expected FetchError({kind}), got {outcome!r}"
    assert outcome.kind == kind, f"expected kind {kind}, got {outcome.kind}: {outcome}"
    assert "\n" not in str(outcome)  # one-line messages
    return outcome


def expect_ok(outcome: Outcome) -> FetchResult:
    assert isinstance(outcome, FetchResult), f"expected a result, got {outcome!r}"
    return outcome


def feed_url(server: HostileServer, path: str, host: str = "feed.test") -> str:
    return f"{server.scheme}://{host}:{server.port}{path}"


# --- the ordinary case ----------------------------------------------------------------------


def test_plain_feed(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    out, elapsed = fetch(feed_url(server, "/feed"), policy=policy, resolver=resolver)
    res = expect_ok(out)
    assert res.content == RSS
    assert res.status == 200 and not res.not_modified
    assert res.content_type == "application/rss+xml"
    assert res.headers["content-type"].startswith("application/rss+xml")
    assert all(name == name.lower() for name in res.headers)
    assert res.url == feed_url(server, "/feed")
    assert 0 <= res.elapsed < 1 and elapsed < 1
    assert resolver.calls == [("feed.test", server.port)]


def test_request_headers(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    out, _ = fetch(
        feed_url(server, "/echo"),
        policy=policy,
        resolver=resolver,
        etag='"abc"',
        last_modified="Mon, 01 Jan 2024 00:00:00 GMT",
        headers={"X-Feed-Token": "t1", "Accept-Encoding": "identity"},
        cookies={"session": "s1", "consent": "yes"},
        fetcher={"user_agent": "newsmon-test/1"},
    )
    sent = json.loads(expect_ok(out).content)["headers"]
    assert sent["user-agent"] == "newsmon-test/1"
    # Always ours: only encodings the fetcher can decode under its cap.
    assert sent["accept-encoding"] == "gzip, deflate, br, zstd"
    assert sent["if-none-match"] == '"abc"'
    assert sent["if-modified-since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert sent["x-feed-token"] == "t1"
    assert sent["cookie"] == "session=s1; consent=yes"


def test_header_injection_refused(server: HostileServer, policy: EgressPolicy) -> None:
    out, _ = fetch(feed_url(server, "/echo", "127.0.0.1"), policy=policy, headers={"X": "a\r\nB: c"})
    expect_error(out, "blocked")
    assert server.requests == []


def test_session_reused_across_fetches(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    async def go() -> int:
        async with Fetcher(policy=policy, resolver=resolver, timeout=TIMEOUT) as f:
            for _ in range(3):
                await f.fetch(feed_url(server, "/feed"))
            sessions = {id(s) for s in f._sessions.values()}
        with pytest.raises(RuntimeError):
            await f.fetch(feed_url(server, "/feed"))
        await f.aclose()  # idempotent
        return len(sessions)

    assert asyncio.run(go()) == 1
    assert server.paths() == ["/feed"] * 3


# --- A1, A2: the total deadline --------------------------------------------------------------


def test_slowloris_headers_hit_total_deadline(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, elapsed = fetch(feed_url(server, "/slowloris-headers"), policy=policy, resolver=resolver)
    expect_error(out, "timeout")
    assert TIMEOUT - 0.1 <= elapsed < TIMEOUT + 1.0


def test_slow_body_hits_total_deadline(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    # 10 MB announced, 1 byte per 0.2 s; the cap is raised so only the deadline can stop it.
    out, elapsed = fetch(
        feed_url(server, "/slow-body?interval=0.2"),
        policy=policy,
        resolver=resolver,
        max_bytes=20 * 1000 * 1000,
    )
    expect_error(out, "timeout")
    assert TIMEOUT - 0.1 <= elapsed < TIMEOUT + 1.0


def test_slow_small_body_hits_total_deadline(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    # Under the cap, each byte arrives well within any per-read timeout: only a total deadline helps.
    out, elapsed = fetch(
        feed_url(server, "/slow-body?length=100&interval=0.3"), policy=policy, resolver=resolver
    )
    expect_error(out, "timeout")
    assert elapsed < TIMEOUT + 1.0


def test_announced_oversize_body_refused_without_reading(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, elapsed = fetch(feed_url(server, "/slow-body"), policy=policy, resolver=resolver)
    expect_error(out, "too_large")
    assert elapsed < 1.0


def test_deadline_covers_redirects(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, elapsed = fetch(
        feed_url(server, "/redirect-to?url=/slowloris-headers"), policy=policy, resolver=resolver
    )
    expect_error(out, "timeout")
    assert elapsed < TIMEOUT + 1.0
    assert server.paths() == ["/redirect-to", "/slowloris-headers"]


# --- A3, A4: byte cap after decompression ------------------------------------------------------


def test_endless_body_capped(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    out, elapsed = fetch(feed_url(server, "/endless"), policy=policy, resolver=resolver)
    err = expect_error(out, "too_large")
    assert "too large" in str(err)
    assert elapsed < 2.0


@pytest.mark.parametrize("path", ["/feed", "/gzip", "/encoded?enc=br", "/encoded?enc=zstd"])
def test_cap_is_exact_and_counts_decoded_bytes(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, path: str
) -> None:
    ok, _ = fetch(feed_url(server, path), policy=policy, resolver=resolver, max_bytes=len(RSS))
    assert expect_ok(ok).content == RSS
    over, _ = fetch(feed_url(server, path), policy=policy, resolver=resolver, max_bytes=len(RSS) - 1)
    expect_error(over, "too_large")


@pytest.mark.parametrize(
    "path", ["/gzip-bomb", "/deflate-bomb", "/br-bomb", "/zstd-bomb", "/double-gzip-bomb"]
)
def test_compression_bombs_capped(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, path: str
) -> None:
    server.bomb(path.strip("/").removesuffix("-bomb").replace("double-gzip", "gzip, gzip"))
    out, elapsed = fetch(feed_url(server, path), policy=policy, resolver=resolver, max_bytes=1024 * 1024)
    expect_error(out, "too_large")
    assert elapsed < 2.0


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    limit = int(sys.argv[2]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, sys.argv[3])
    from monitor.ingest.fetch import Fetcher
    from monitor.models import FetchError
    from monitor.ingest.netguard import EgressPolicy

    async def main():
        port = int(sys.argv[1])
        policy = EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[port])
        kinds = {}
        async with Fetcher(policy=policy, timeout=20) as f:
            for path in sys.argv[4:]:
                try:
                    res = await f.fetch(f"http://127.0.0.1:{port}{path}")
                    kinds[path] = f"ok:{len(res.content)}"
                except FetchError as exc:
                    kinds[path] = exc.kind
        # VmHWM is this process's own peak. ru_maxrss is not: Linux carries it
        # across execve, so a child of a large pytest process reports the parent's.
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        rss = int(hwm.split()[1]) // 1024
        print(json.dumps({"kinds": kinds, "max_rss_mib": rss}))

    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
def test_bombs_and_endless_body_stay_in_bounded_memory(server: HostileServer) -> None:
    """Harness H4: the client runs in a subprocess whose address space is capped at 384 MiB.

    Each body would inflate to 1 GiB (or never end): only a streaming,
    post-decompression cap can finish here.
    """
    paths = ["/gzip-bomb", "/deflate-bomb", "/br-bomb", "/zstd-bomb", "/double-gzip-bomb", "/endless"]
    for enc in ("gzip", "deflate", "br", "zstd", "gzip, gzip"):
        server.bomb(enc)  # built in this process, outside the child's limit
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(server.port), "384", str(REPO), *paths],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["kinds"] == dict.fromkeys(paths, "too_large")
    assert report["max_rss_mib"] < 200, report


def test_stacked_encodings_decoded(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, _ = fetch(feed_url(server, "/double-gzip"), policy=policy, resolver=resolver)
    assert expect_ok(out).content == RSS


@pytest.mark.parametrize(
    "enc", ["gzip", "x-gzip", "deflate", "br", "zstd", "identity", "gzip, br", "br, zstd, gzip"]
)
def test_each_supported_encoding(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, enc: str
) -> None:
    out, _ = fetch(feed_url(server, f"/encoded?enc={enc}"), policy=policy, resolver=resolver)
    assert expect_ok(out).content == RSS


@pytest.mark.parametrize("enc", ["gzip", "deflate", "br", "zstd", "br, gzip", "zstd, br"])
def test_large_bodies_decoded_completely(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, enc: str
) -> None:
    """Bodies that decode to many output pieces (each decoder yields at most 64 KiB per step)."""
    size = 3 * 1000 * 1000
    out, _ = fetch(feed_url(server, f"/encoded?enc={enc}&size={size}"), policy=policy, resolver=resolver)
    assert expect_ok(out).content == big_body(size)


@pytest.mark.parametrize("enc", ["gzip", "deflate", "br", "zstd", "gzip, zstd, br"])
@pytest.mark.parametrize("step", [1, 5, 4096])
def test_decoder_any_chunking(enc: str, step: int) -> None:
    """However the network splits the body, the decoded bytes are the same."""
    body = big_body(200_000)
    wire = encode_body(body, enc)
    decoder = BodyDecoder(layers_for(enc), max_bytes=len(body))
    for start in range(0, len(wire), step):
        decoder.feed(wire[start : start + step])
    assert decoder.finish() == body
    capped = BodyDecoder(layers_for(enc), max_bytes=len(body) - 1)
    with pytest.raises(Overflow):
        capped.feed(wire)
        capped.finish()


@pytest.mark.parametrize(
    "path",
    [
        "/unknown-encoding",  # compress: not supported
        "/encoded?enc=gzip,gzip,gzip,gzip",  # more layers than allowed
        "/corrupt-gzip",
        "/cut-gzip",  # a complete HTTP body holding an incomplete gzip stream
    ],
)
def test_bad_encodings_rejected(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, path: str
) -> None:
    out, _ = fetch(feed_url(server, path), policy=policy, resolver=resolver)
    expect_error(out, "bad_encoding")


# --- A5, A6, A7: redirects ---------------------------------------------------------------------


def test_redirect_loop_stops_after_five_hops(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, elapsed = fetch(feed_url(server, "/redirect-loop"), policy=policy, resolver=resolver)
    err = expect_error(out, "redirects")
    assert "too many redirects" in str(err)
    assert server.paths() == ["/redirect-loop"] * 6  # the first request and 5 followed hops
    assert elapsed < 1.0


def test_five_redirects_followed_six_refused(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    ok, _ = fetch(feed_url(server, "/redirect-chain/5"), policy=policy, resolver=resolver)
    res = expect_ok(ok)
    assert res.content == RSS
    assert res.url == feed_url(server, "/redirect-chain/0")
    too_many, _ = fetch(feed_url(server, "/redirect-chain/20"), policy=policy, resolver=resolver)
    expect_error(too_many, "redirects")


def test_max_redirects_configurable(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, _ = fetch(
        feed_url(server, "/redirect-chain/1"),
        policy=policy,
        resolver=resolver,
        fetcher={"max_redirects": 0},
    )
    expect_error(out, "redirects")


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/hostname",
        "ftp://127.0.0.1/feed",
        "gopher://127.0.0.1:70/_x",
        "data:text/xml,<rss/>",
        "javascript:alert(1)",
    ],
)
def test_redirect_to_non_http_scheme_refused(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, location: str
) -> None:
    url = feed_url(server, "/redirect-to") + "?url=" + location
    out, _ = fetch(url, policy=policy, resolver=resolver)
    err = expect_error(out, "redirects")
    assert "scheme" in str(err)
    assert server.paths() == ["/redirect-to"]


def test_redirect_file_route(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    out, _ = fetch(feed_url(server, "/redirect-file"), policy=policy, resolver=resolver)
    expect_error(out, "redirects")


def test_cross_origin_redirect_drops_credentials(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    secret = {"headers": {"Authorization": "Bearer s3cret"}, "cookies": {"sid": "c00kie"}}
    other = feed_url(server, "/echo", host="other.test")
    out, _ = fetch(feed_url(server, f"/redirect-to?url={other}"), policy=policy, resolver=resolver, **secret)
    sent = json.loads(expect_ok(out).content)["headers"]
    assert "authorization" not in sent and "cookie" not in sent
    # Same origin: they are kept.
    out, _ = fetch(feed_url(server, "/redirect-to?url=/echo"), policy=policy, resolver=resolver, **secret)
    sent = json.loads(expect_ok(out).content)["headers"]
    assert sent["authorization"] == "Bearer s3cret" and sent["cookie"] == "sid=c00kie"


def test_redirect_target_rules() -> None:
    from yarl import URL

    base = URL("https://feed.test/a/b")
    assert str(redirect_target(base, "../c?x=1")) == "https://feed.test/c?x=1"
    assert str(redirect_target(base, "https://other.test/")) == "https://other.test/"
    with pytest.raises(FetchError) as info:
        redirect_target(base, "http://feed.test/a/b")
    assert info.value.kind == "redirects" and "downgrade" in str(info.value)
    assert str(redirect_target(URL("http://feed.test/"), "https://feed.test/")) == "https://feed.test/"


# --- A8: a 200 that is not a feed: the transport returns it, the parser judges ------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/html", "text/html"), ("/empty", "application/rss+xml"), ("/junk", "application/rss+xml")],
)
def test_non_feed_200_returned_as_is(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, path: str, media_type: str
) -> None:
    out, _ = fetch(feed_url(server, path), policy=policy, resolver=resolver)
    res = expect_ok(out)
    assert res.status == 200 and res.content_type == media_type
    assert (len(res.content) == 0) == (path == "/empty")


@pytest.mark.parametrize("path", ["/pdf", "/png", "/video", "/octet"])
def test_page_with_non_html_type_refused(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, path: str
) -> None:
    out, _ = fetch(feed_url(server, path), policy=policy, resolver=resolver, kind="page")
    err = expect_error(out, "bad_content_type")
    assert "not a web page" in str(err)
    # A feed fetch does not judge the type: the parser will.
    assert expect_ok(fetch(feed_url(server, path), policy=policy, resolver=resolver)[0]).content


def test_page_html_accepted(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    out, _ = fetch(feed_url(server, "/html"), policy=policy, resolver=resolver, kind="page")
    assert b"<form" in expect_ok(out).content


# --- A9: 429 / 503 ----------------------------------------------------------------------------


def test_429_retry_after_seconds(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, _ = fetch(feed_url(server, "/429"), policy=policy, resolver=resolver)
    err = expect_error(out, "http_status")
    assert err.status == 429 and err.retry_after == 3600
    assert "429" in str(err)


def test_503_retry_after_http_date(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, _ = fetch(feed_url(server, "/503"), policy=policy, resolver=resolver)
    err = expect_error(out, "http_status")
    assert err.status == 503
    assert err.retry_after is not None and 100 <= err.retry_after <= 121


def test_other_status_has_no_retry_after(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    out, _ = fetch(feed_url(server, "/status/500"), policy=policy, resolver=resolver)
    err = expect_error(out, "http_status")
    assert err.status == 500 and err.retry_after is None


def test_parse_retry_after() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("99999999") == 6 * 3600  # capped
    assert parse_retry_after("Mon, 01 Jan 2024 00:10:00 GMT", now=now) == 600
    past = (now - timedelta(days=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(past, now=now) == 0
    assert parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now=now) == 6 * 3600
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


# --- A10: conditional GET ------------------------------------------------------------------------


def test_conditional_get_304(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    first, _ = fetch(feed_url(server, "/304"), policy=policy, resolver=resolver)
    res = expect_ok(first)
    assert res.status == 200 and res.content == RSS
    assert res.etag == '"v1"' and res.last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    second, _ = fetch(
        feed_url(server, "/304"),
        policy=policy,
        resolver=resolver,
        etag=res.etag,
        last_modified=res.last_modified,
    )
    nm = expect_ok(second)
    assert nm.not_modified and nm.status == 304 and nm.content == b""
    assert nm.etag == '"v1"'
    assert server.requests[-1].headers["if-none-match"] == '"v1"'


def test_etag_churn_is_reported_not_hidden(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    a = expect_ok(fetch(feed_url(server, "/etag-churn"), policy=policy, resolver=resolver)[0])
    b = expect_ok(fetch(feed_url(server, "/etag-churn"), policy=policy, resolver=resolver, etag=a.etag)[0])
    assert a.etag and b.etag and a.etag != b.etag
    assert not b.not_modified and b.content == a.content  # dedup is by item, not response


# --- A11: TLS ---------------------------------------------------------------------------------------


def _make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for ``name`` (openssl CLI, else trustme)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        return cert, key
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(cert))
    issued = ca.issue_cert(name)
    issued.private_key_pem.write_to_path(str(key))
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    (directory / "server.pem").write_bytes(chain)
    return cert, key


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileServer, Path]]:
    """An HTTPS hostile server whose certificate (for feed.test) no public CA signed."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = _make_cert(directory, "feed.test")
    chain = directory / "server.pem"
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(chain if chain.exists() else cert), str(key))
    with HostileServer(ssl_context=ctx) as srv:
        yield srv, cert


@pytest.fixture
def tls_policy(server: HostileServer, tls: tuple[HostileServer, Path]) -> EgressPolicy:
    return EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[server.port, tls[0].port])


def test_self_signed_certificate_refused(
    tls: tuple[HostileServer, Path], tls_policy: EgressPolicy, resolver: StaticResolver
) -> None:
    srv, _ = tls
    srv.reset()
    out, elapsed = fetch(feed_url(srv, "/feed"), policy=tls_policy, resolver=resolver)
    err = expect_error(out, "tls")
    assert "TLS" in str(err) and elapsed < 1.5
    # The kind is "tls", not "connection": TCP got through and the handshake failed.
    # No request was ever sent (no insecure retry).
    assert srv.requests == []


def test_trusted_certificate_accepted_and_wrong_host_refused(
    tls: tuple[HostileServer, Path], tls_policy: EgressPolicy, resolver: StaticResolver
) -> None:
    srv, cert = tls
    srv.reset()
    trusting = ssl.create_default_context(cafile=str(cert))
    ok, _ = fetch(
        feed_url(srv, "/feed"), policy=tls_policy, resolver=resolver, fetcher={"ssl_context": trusting}
    )
    assert expect_ok(ok).content == RSS  # the positive control: the same server, trusted
    wrong, _ = fetch(
        feed_url(srv, "/feed", host="evil.test"),
        policy=tls_policy,
        resolver=resolver,
        fetcher={"ssl_context": trusting},
    )
    expect_error(wrong, "tls")
    assert srv.paths() == ["/feed"]


def test_insecure_ssl_context_rejected() -> None:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError):
        Fetcher(ssl_context=insecure)


def test_https_to_http_downgrade_refused(
    server: HostileServer,
    tls: tuple[HostileServer, Path],
    tls_policy: EgressPolicy,
    resolver: StaticResolver,
) -> None:
    srv, cert = tls
    trusting = ssl.create_default_context(cafile=str(cert))
    plain = feed_url(server, "/feed")
    out, _ = fetch(
        feed_url(srv, f"/redirect-to?url={plain}"),
        policy=tls_policy,
        resolver=resolver,
        fetcher={"ssl_context": trusting},
    )
    err = expect_error(out, "redirects")
    assert "downgrade" in str(err)
    assert server.requests == []


# --- A12: broken connections and bodies ------------------------------------------------------------


def test_connection_refused(resolver: StaticResolver) -> None:
    port = free_port()  # nothing listens there
    pol = EgressPolicy(allowed_networks=["127.0.0.1/32"], allowed_ports=[port])
    out, elapsed = fetch(f"http://feed.test:{port}/feed", policy=pol, resolver=resolver)
    expect_error(out, "connection")
    assert elapsed < 1.5


def test_unknown_host_is_a_connection_error(server: HostileServer, policy: EgressPolicy) -> None:
    out, _ = fetch(feed_url(server, "/feed", host="nxdomain.test"), policy=policy, resolver=StaticResolver())
    err = expect_error(out, "connection")
    assert "resolve" in str(err)


@pytest.mark.parametrize(
    "path", ["/truncated", "/rst-mid-body", "/bad-chunk", "/truncated-chunked", "/short-length"]
)
def test_broken_bodies_never_returned(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver, path: str
) -> None:
    out, elapsed = fetch(feed_url(server, path), policy=policy, resolver=resolver)
    expect_error(out, "connection")
    assert elapsed < 1.5


def test_duplicate_headers_last_wins(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    res = expect_ok(fetch(feed_url(server, "/dup-headers"), policy=policy, resolver=resolver)[0])
    assert res.content == RSS
    assert res.content_type == "application/rss+xml" and res.etag == '"b"'


# --- concurrency -------------------------------------------------------------------------------------


def _fetch_many(
    urls: list[str], policy: EgressPolicy, resolver: StaticResolver, **opts: Any
) -> list[Outcome]:
    async def go() -> list[Outcome]:
        async with Fetcher(policy=policy, resolver=resolver, timeout=10, **opts) as f:
            return list(await asyncio.gather(*(f.fetch(u) for u in urls), return_exceptions=True))  # type: ignore[arg-type]

    return asyncio.run(go())


def test_per_host_limit(server: HostileServer, policy: EgressPolicy, resolver: StaticResolver) -> None:
    urls = [feed_url(server, "/hold?ms=150")] * 8
    results = _fetch_many(urls, policy, resolver, per_host=2, concurrency=20)
    assert all(isinstance(r, FetchResult) for r in results)
    assert server.max_active["/hold"] == 2


def test_global_limit(server: HostileServer, policy: EgressPolicy) -> None:
    hosts = [f"h{i}.test" for i in range(8)]
    resolver = StaticResolver(dict.fromkeys(hosts, "127.0.0.1"))
    urls = [feed_url(server, "/hold?ms=150", host=h) for h in hosts]
    results = _fetch_many(urls, policy, resolver, per_host=4, concurrency=3)
    assert all(isinstance(r, FetchResult) for r in results)
    assert server.max_active["/hold"] == 3


# --- messages -----------------------------------------------------------------------------------------


def test_error_messages_mask_secrets(
    server: HostileServer, policy: EgressPolicy, resolver: StaticResolver
) -> None:
    url = f"http://user:hunter2@feed.test:{server.port}/429?token=abc123&page=2"
    err = expect_error(fetch(url, policy=policy, resolver=resolver)[0], "http_status")
    text = str(err)
    assert "hunter2" not in text and "abc123" not in text
    assert "feed.test" in text and "page=2" in text


def test_mask_url() -> None:
    assert mask_url("https://u:p@x.test/a?api_key=k&q=1") == "https://***@x.test/a?api_key=***&q=1"
    assert mask_url("https://x.test/a") == "https://x.test/a"
