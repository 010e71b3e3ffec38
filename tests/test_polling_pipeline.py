"""The polling policy through the real pipeline, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from monitor.config import FeedConfig
from monitor.records import iso, parse_iso
from monitor.runtime.pipeline import Pipeline
from tests.helpers.feed import (
    FastProcessor,
    build,
    feed_row,
    notices,
    pipeline_config,
    rows,
    run,
)
from tests.helpers.hostile import HostileServer, StaticResolver
from tests.helpers.loopback import free_port
from tests.helpers.servers import Site, rss


def items(n: int, *, prefix: str = "Story", base: str = "http://127.0.0.1/a/",
          start: datetime | None = None) -> list[dict[str, str]]:
    start = start or datetime(2025, 1, 1, tzinfo=UTC)
    return [{"title": f"{prefix} {i}", "link": f"{base}{prefix.lower()}-{i}",
             "guid": f"{prefix}-{i}", "description": f"Text of {prefix.lower()} {i}.",
             "pubDate": (start + timedelta(minutes=i)).strftime("%a, %d %b %Y %H:%M:%S GMT")}
            for i in range(n)]


def feed_route(body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/rss+xml", **headers}, body


def near(when: datetime | None, seconds: float, tolerance: float = 30) -> bool:
    assert when is not None
    expected = datetime.now(UTC) + timedelta(seconds=seconds)
    return abs((when - expected).total_seconds()) <= tolerance


# --- conditional GET, unchanged bodies, newest N ---------------------------------------


def test_conditional_get_sends_validators_and_a_304_is_a_success(
        tmp_path: Path, site: Site) -> None:
    body = rss(items(3))

    def conditional(handler: Any) -> tuple[int, dict[str, str], bytes]:
        if handler.headers.get("If-None-Match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return feed_route(body, ETag='"v1"', **{"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"})

    site.routes["/feed"] = conditional
    config = pipeline_config(tmp_path, [site.url("/feed")])
    pipeline = build(config)

    async def scenario() -> list[Any]:
        return [await pipeline.poll(config.feeds[0], force=True) for _ in range(2)]

    first, second = run(pipeline, scenario())
    assert first.ok and first.new_items == 3
    assert second.ok and second.not_modified and second.new_items == 0
    sent = site.requests[1].headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    row = feed_row(config, site.url("/feed"))
    assert row["etag"] == '"v1"' and row["consecutive_failures"] == 0
    assert isinstance(pipeline.processor, FastProcessor) and pipeline.processor.parses == 1


def test_an_unchanged_body_is_not_parsed_again(tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = feed_route(rss(items(5)))  # no validators at all
    config = pipeline_config(tmp_path, [site.url("/feed")])
    pipeline = build(config)

    async def scenario() -> list[Any]:
        return [await pipeline.poll(config.feeds[0], force=True) for _ in range(3)]

    outcomes = run(pipeline, scenario())
    assert [o.unchanged for o in outcomes] == [False, True, True]
    assert isinstance(pipeline.processor, FastProcessor) and pipeline.processor.parses == 1
    assert len(site.requests) == 3


def test_only_the_newest_n_items_of_a_huge_feed_are_processed(tmp_path: Path, site: Site) -> None:
    listed = items(300)
    listed.reverse()  # oldest last, as usual
    listed.insert(150, listed.pop(0))  # the newest one hidden in the middle
    site.routes["/feed"] = feed_route(rss(listed))
    config = pipeline_config(tmp_path, [site.url("/feed")], max_items_per_poll=20)
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.items == 20 and outcome.new_items == 20
    stored = {r[0] for r in rows(config, "SELECT title FROM items")}
    assert stored == {f"Story {i}" for i in range(280, 300)}  # by date, not position


def test_per_feed_max_items_wins(tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = feed_route(rss(items(30)))
    config = pipeline_config(tmp_path, [FeedConfig(url=site.url("/feed"), max_items=7)])
    pipeline = build(config)
    assert run(pipeline, pipeline.poll(config.feeds[0], force=True)).items == 7


# --- when to poll next ----------------------------------------------------------------------


def test_max_age_sets_the_next_poll_and_poll_returns_not_due_until_then(
        tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = feed_route(rss(items(2)), **{"Cache-Control": "max-age=1800"})
    config = pipeline_config(tmp_path, [site.url("/feed")], adaptive=False)  # base: 10 min
    pipeline = build(config)
    feed = config.feeds[0]

    async def scenario() -> list[Any]:
        return [await pipeline.poll(feed), await pipeline.poll(feed),
                await pipeline.run_cycle(force=False), await pipeline.poll(feed, force=True)]

    first, early, cycle, forced = run(pipeline, scenario())
    assert first.ok and first.reason == "max-age" and near(first.next_poll_at, 1800)
    assert early.not_due and cycle.outcomes[0].not_due
    assert forced.ok and forced.unchanged  # `newsmon once` polls regardless
    assert len(site.requests) == 2
    assert near(parse_iso(feed_row(config, feed.url)["next_poll_at"]), 1800)
    assert pipeline.job_interval(feed) == config.fetch.min_interval


def test_rss_ttl_is_remembered_for_later_304s(tmp_path: Path, site: Site) -> None:
    body = rss(items(2)).replace(b"<description>test</description>",
                                 b"<description>test</description><ttl>90</ttl>")

    def conditional(handler: Any) -> tuple[int, dict[str, str], bytes]:
        if handler.headers.get("If-None-Match") == '"t"':
            return 304, {"ETag": '"t"'}, b""
        return feed_route(body, ETag='"t"')

    site.routes["/feed"] = conditional
    config = pipeline_config(tmp_path, [site.url("/feed")], adaptive=False)
    pipeline = build(config)

    async def scenario() -> list[Any]:
        return [await pipeline.poll(config.feeds[0], force=True) for _ in range(2)]

    first, second = run(pipeline, scenario())
    assert first.reason == "ttl" and first.interval == 5400
    assert second.not_modified and second.reason == "ttl" and second.interval == 5400


def test_retry_after_on_429_is_honoured_and_capped(tmp_path: Path) -> None:
    with HostileServer() as srv:  # /429 answers Retry-After: 3600
        config = pipeline_config(tmp_path, [srv.url("/429")], retry_after_max=1200)
        pipeline = build(config)
        outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert not outcome.ok and outcome.error_kind == "http_status"
    assert outcome.reason == "retry-after" and outcome.interval == 1200
    row = feed_row(config, srv.url("/429"))
    assert row["consecutive_failures"] == 1 and near(parse_iso(row["next_poll_at"]), 1200)


# --- per-host backoff (hostile-inputs case 9) -------------------------------------------


def _paths(server: Site) -> list[str]:
    return [r.path for r in server.requests]


@contextmanager
def later(pipeline: Pipeline, seconds: float, *, tick: bool = True) -> Iterator[None]:
    """Both clocks move on: the wall clock (feed schedules) and the pipeline's
    monotonic one (host pauses, which a wall-clock step must not stretch)."""
    real = pipeline.clock
    pipeline.clock = lambda: real() + seconds
    try:
        with time_machine.travel(timedelta(seconds=seconds), tick=tick):
            yield
    finally:
        pipeline.clock = real


def test_a_429_pauses_every_feed_of_that_host_until_retry_after(
        tmp_path: Path, site: Site) -> None:
    site.routes["/a"] = (429, {"Content-Type": "text/plain", "Retry-After": "120"}, b"slow down")
    site.routes["/b"] = feed_route(rss(items(2)))
    with Site(routes={"/c": feed_route(rss(items(1, prefix="Other")))}) as other:
        config = pipeline_config(tmp_path, [site.url("/a"), site.url("/b"), other.url("/c")])
        pipeline = build(config)
        a, b, c = config.feeds

        async def scenario() -> tuple[list[Any], Any, Any, dict[str, Any], list[Any]]:
            first = [await pipeline.poll(f, force=True) for f in (a, b, c)]
            again = await pipeline.poll(a, force=True)  # the feed that was told waits too
            cycle = await pipeline.run_cycle()  # `newsmon once` in the same process
            paused = feed_row(config, b.url)
            with later(pipeline, 121):
                site.routes["/a"] = feed_route(rss(items(1, prefix="Back")))
                after = [await pipeline.poll(f) for f in (a, b)]  # due again, no force
            return first, again, cycle, paused, after

        (told, held, elsewhere), again, cycle, paused, after = run(pipeline, scenario())
        other_paths = _paths(other)
    assert not told.ok and told.reason == "retry-after" and told.interval == 120
    assert held.ok and held.not_due and held.reason == "host backoff"
    assert near(held.next_poll_at, 120, tolerance=5) and "host backoff" in held.summary()
    assert again.not_due and again.reason == "host backoff"
    assert elsewhere.ok and elsewhere.new_items == 1  # another port is another host
    # The paused feed was neither fetched nor failed: its row is untouched.
    assert paused["consecutive_failures"] == 0 and paused["last_error"] is None
    assert paused["last_poll_at"] is None and paused["next_poll_at"] is None
    assert [o.not_due for o in cycle.outcomes] == [True, True, False] and not cycle.failed
    assert rows(config, "SELECT feeds_ok, feeds_failed FROM cycles") == [(1, 0)]
    assert all(o.ok and not o.not_due for o in after), [o.summary() for o in after]
    assert after[1].new_items == 2
    assert _paths(site) == ["/a", "/a", "/b"]  # nothing to that host inside the window
    assert other_paths == ["/c", "/c"]


def test_a_503_without_retry_after_pauses_the_host_for_the_backoff_base(
        tmp_path: Path, site: Site) -> None:
    site.routes["/a"] = (503, {"Content-Type": "text/plain"}, b"down")
    site.routes["/b"] = feed_route(rss(items(1)))
    config = pipeline_config(tmp_path, [site.url("/a"), site.url("/b")], backoff_base=300)
    pipeline = build(config)
    a, b = config.feeds

    async def scenario() -> list[Any]:
        outcomes = [await pipeline.poll(a, force=True), await pipeline.poll(b, force=True)]
        with later(pipeline, 299, tick=False):
            outcomes.append(await pipeline.poll(b))
        with later(pipeline, 301):
            outcomes.append(await pipeline.poll(b))
        return outcomes

    failed, held, still, back = run(pipeline, scenario())
    assert not failed.ok and failed.error_kind == "http_status"
    assert feed_row(config, a.url)["consecutive_failures"] == 1  # the 503 is a failure
    assert held.not_due and near(held.next_poll_at, 300, tolerance=5)
    assert still.not_due and still.reason == "host backoff"
    assert back.ok and back.new_items == 1
    assert _paths(site) == ["/a", "/b"]


def test_article_pages_on_a_paused_host_are_not_fetched(tmp_path: Path, site: Site) -> None:
    with Site() as other:
        for n in range(2):  # the article pages answer 429: the whole host pauses
            other.routes[f"/news/story-{n}"] = (429, {"Retry-After": "600"}, b"slow down")
        other.routes["/feed"] = feed_route(rss(items(1, prefix="Theirs")))
        site.routes["/one"] = feed_route(rss(items(2, base=other.url("/news/"))))
        site.routes["/two"] = feed_route(rss(items(2, prefix="Later",
                                                   base=other.url("/news/"))))
        config = pipeline_config(tmp_path, [site.url("/one"), other.url("/feed"), site.url("/two")],
                             fetch_articles=True)
        pipeline = build(config)

        async def scenario() -> list[Any]:
            return [await pipeline.poll(f, force=True) for f in config.feeds]

        one, theirs, two = run(pipeline, scenario())
        other_paths = sorted(_paths(other))
    assert one.ok and one.new_items == 2
    assert theirs.not_due and theirs.reason == "host backoff"  # a page's 429 pauses feeds too
    assert two.ok and two.new_items == 2  # judged on their summaries
    assert other_paths == ["/news/story-0", "/news/story-1"]
    assert isinstance(pipeline.processor, FastProcessor)
    errors = [s.page_error or "" for s in pipeline.processor.seen]
    assert [e.startswith("http_status") for e in errors] == [True, True, False, False]
    assert all(e.startswith("host backoff") for e in errors[2:]), errors


def test_errors_back_off_and_the_feed_is_never_given_up(tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = (500, {"Content-Type": "text/plain"}, b"down")
    config = pipeline_config(tmp_path, [site.url("/feed")], backoff_base=100, backoff_max=700,
                         min_interval=10)
    pipeline = build(config)

    async def scenario() -> list[Any]:
        return [await pipeline.poll(config.feeds[0], force=True) for _ in range(6)]

    outcomes = run(pipeline, scenario())
    intervals = [o.interval or 0 for o in outcomes]
    for n, interval in enumerate(intervals):
        step = min(100 * 2**n, 700)
        assert 0.75 * step <= interval <= step, (n, intervals)
    row = feed_row(config, site.url("/feed"))
    assert row["consecutive_failures"] == 6 and row["next_poll_at"]  # still scheduled
    site.routes["/feed"] = feed_route(rss(items(1)))
    pipeline = build(config)
    back = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert back.ok and feed_row(config, site.url("/feed"))["consecutive_failures"] == 0


def _dead_hosts_config(tmp_path: Path, names: list[str], **fetch: Any) -> Any:
    port = free_port()  # nothing listens there: connection refused, instantly
    return pipeline_config(tmp_path, [f"http://{n}:{port}/feed" for n in names], **fetch)


def test_a_network_outage_in_a_cycle_is_not_counted_against_the_feeds(tmp_path: Path) -> None:
    names = ["a.test", "b.test", "c.test"]
    config = _dead_hosts_config(tmp_path, names)
    resolver = StaticResolver(dict.fromkeys(names, "127.0.0.1"))
    pipeline = build(config, resolver=resolver)
    report = run(pipeline, pipeline.run_cycle())
    assert all(not o.ok and o.error_kind == "connection" for o in report.outcomes)
    assert all(o.network_down and o.reason == "network down" for o in report.outcomes)
    for feed in config.feeds:
        row = feed_row(config, feed.url)
        assert row["consecutive_failures"] == 0 and row["failing_since"] is None
        assert row["last_error_kind"] == "connection"  # still shown to the operator
    assert rows(config, "SELECT error FROM cycles") == [("network down",)]


def test_one_dead_host_among_working_ones_is_counted(tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = feed_route(rss(items(1)))
    port = free_port()
    config = pipeline_config(tmp_path, [site.url("/feed"), f"http://a.test:{port}/f",
                                    f"http://b.test:{port}/f", f"http://c.test:{port}/f"])
    resolver = StaticResolver({"a.test": "127.0.0.1", "b.test": "127.0.0.1",
                               "c.test": "127.0.0.1", "127.0.0.1": "127.0.0.1"})
    pipeline = build(config, resolver=resolver)
    report = run(pipeline, pipeline.run_cycle())
    assert len(report.failed) == 3 and not any(o.network_down for o in report.failed)
    assert feed_row(config, f"http://a.test:{port}/f")["consecutive_failures"] == 1


def test_single_polls_notice_an_outage_within_the_window(tmp_path: Path) -> None:
    names = ["a.test", "b.test", "c.test", "d.test"]
    config = _dead_hosts_config(tmp_path, names, outage_hosts=3)
    pipeline = build(config, resolver=StaticResolver(dict.fromkeys(names, "127.0.0.1")))

    async def scenario() -> list[Any]:
        return [await pipeline.poll(f, force=True) for f in config.feeds]

    outcomes = run(pipeline, scenario())
    # The first two could be one broken host each; from the third, the network is down.
    assert [o.network_down for o in outcomes] == [False, False, True, True]
    assert feed_row(config, config.feeds[3].url)["consecutive_failures"] == 0


# --- what is sent --------------------------------------------------------------------------


def test_user_agent_per_feed_headers_and_cookies_are_sent(tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = feed_route(rss(items(1)))
    feed = FeedConfig(url=site.url("/feed"), headers={"Authorization": "Bearer t0k"},
                      cookies={"session": "abc", "lang": "en"})
    config = pipeline_config(tmp_path, [feed], user_agent="newsmon-test/9 (+ops@example.org)")
    pipeline = build(config)
    assert run(pipeline, pipeline.poll(feed, force=True)).ok
    sent = site.requests[0].headers
    assert sent["user-agent"] == "newsmon-test/9 (+ops@example.org)"
    assert sent["authorization"] == "Bearer t0k"
    assert sent["cookie"] == "session=abc; lang=en"


def test_a_per_feed_proxy_is_used(tmp_path: Path) -> None:
    with HostileServer() as proxy:
        feed = FeedConfig(url="http://feed.test/feed", proxy=proxy.url("/").rstrip("/"))
        config = pipeline_config(tmp_path, [feed])
        pipeline = build(config)
        outcome = run(pipeline, pipeline.poll(feed, force=True))
        assert outcome.ok and outcome.new_items == 2, outcome.summary()
        assert proxy.requests[0].proxied and proxy.requests[0].path == "/feed"


def test_the_global_concurrency_limit_holds_in_a_cycle(tmp_path: Path) -> None:
    with HostileServer() as srv:
        urls = [srv.url(f"/hold?ms=150&n={i}") for i in range(12)]
        config = pipeline_config(tmp_path, urls, concurrency=3, per_host=10)
        pipeline = build(config)
        started = time.monotonic()
        report = run(pipeline, pipeline.run_cycle())
        elapsed = time.monotonic() - started
        assert not report.failed
        assert srv.max_active.get("/hold", 0) <= 3
    assert elapsed >= 4 * 0.15  # 12 requests, 3 at a time


# --- feed health ------------------------------------------------------------------------------


def test_a_failing_feed_raises_one_notice_and_one_on_recovery(tmp_path: Path, site: Site) -> None:
    # A 500, not a 503: a 503 also pauses the host, and these polls are back to back.
    site.routes["/feed"] = (500, {"Content-Type": "text/plain"}, b"down")
    config = pipeline_config(tmp_path, [site.url("/feed")], failing_notice_after=0)
    pipeline = build(config)

    async def scenario() -> None:
        for _ in range(4):
            await pipeline.poll(config.feeds[0], force=True)
        site.routes["/feed"] = feed_route(rss(items(1)))
        for _ in range(2):
            await pipeline.poll(config.feeds[0], force=True)

    run(pipeline, scenario())
    titles = [t for _, t in notices(config)]
    label = site.url("/feed")
    assert titles == [f"Feed failing: {label}", f"Feed recovered: {label}"]
    # They go to the admin channel only.
    assert {r[0] for r in rows(config, "SELECT channel FROM alerts WHERE kind='notice'")} == {"ops"}
    assert feed_row(config, label)["health_state"] == "ok"


def test_a_feed_gone_quiet_raises_one_notice(tmp_path: Path, site: Site) -> None:
    site.routes["/feed"] = (200, {"Content-Type": "application/rss+xml", "ETag": '"q"'},
                            rss(items(1)))
    config = pipeline_config(tmp_path, [site.url("/feed")], quiet_min=3600, quiet_factor=5)
    pipeline = build(config)
    url = site.url("/feed")
    run(pipeline, pipeline.poll(config.feeds[0], force=True))
    # It used to bring 24 items a day; the last one came 2 days ago.
    pipeline.storage.db.execute("UPDATE feeds SET items_per_day = 24, last_new_at = ?, body_hash"
                              " = NULL WHERE url = ?",
                              (iso(datetime.now(UTC) - timedelta(days=2)), url))
    pipeline = build(config)

    async def scenario() -> None:
        for _ in range(3):
            await pipeline.poll(config.feeds[0], force=True)

    run(pipeline, scenario())
    assert [t for _, t in notices(config)] == [f"Feed quiet: {url}"]
    assert feed_row(config, url)["health_state"] == "quiet"
    site.routes["/feed"] = feed_route(rss(items(3, prefix="Fresh",
                                                start=datetime.now(UTC))))
    pipeline = build(config)
    run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert [t for _, t in notices(config)][-1] == f"Feed active again: {url}"


def test_items_per_day_and_last_new_are_computed(tmp_path: Path, site: Site) -> None:
    now = datetime.now(UTC)
    listed = items(24, start=now - timedelta(hours=23, minutes=30))
    listed = [dict(i, pubDate=(now - timedelta(hours=n)).strftime("%a, %d %b %Y %H:%M:%S GMT"))
              for n, i in enumerate(listed)]  # one an hour over the last day
    listed.append({"title": "From the future", "guid": "future", "description": "x",
                   "pubDate": "Fri, 01 Jan 2100 00:00:00 GMT"})
    site.routes["/feed"] = feed_route(rss(listed))
    config = pipeline_config(tmp_path, [site.url("/feed")])
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    row = feed_row(config, site.url("/feed"))
    assert 20 <= row["items_per_day"] <= 30
    last_new = parse_iso(row["last_new_at"])
    assert last_new is not None and last_new <= datetime.now(UTC)  # 2100 clamped to now
    assert outcome.reason == "adaptive" and 1500 <= (outcome.interval or 0) <= 2300


# --- the event loop stays responsive ---------------------------------------------------------


def test_parsing_a_big_feed_does_not_block_the_event_loop(tmp_path: Path, site: Site) -> None:
    big = items(3000)
    for i in big:
        i["description"] = "Lorem ipsum dolor sit amet. " * 40
    site.routes["/feed"] = feed_route(rss(big))
    config = pipeline_config(tmp_path, [site.url("/feed")], max_items_per_poll=1000)
    pipeline = build(config)

    async def scenario() -> float:
        lags: list[float] = []

        async def ticker() -> None:
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - t - 0.01)

        task = asyncio.create_task(ticker())
        outcome = await pipeline.poll(config.feeds[0], force=True)
        task.cancel()
        assert outcome.ok and outcome.items == 1000
        return max(lags)

    worst = run(pipeline, scenario())
    assert worst < 0.5, f"the loop stalled for {worst:.2f}s"


@pytest.mark.parametrize("kind", ["connection"])
def test_failure_kinds_are_stored(tmp_path: Path, kind: str) -> None:
    config = pipeline_config(tmp_path, [f"http://127.0.0.1:{free_port()}/feed"])
    pipeline = build(config)
    outcome = run(pipeline, pipeline.poll(config.feeds[0], force=True))
    assert outcome.error_kind == kind
    assert feed_row(config, config.feeds[0].url)["last_error_kind"] == kind


def test_poll_state_commits_lazily_and_restores_full_sync(tmp_path: Path, site: Site) -> None:
    """Poll-state writes skip the fsync; the connection goes back to FULL for items."""
    site.routes["/feed"] = feed_route(rss(items(2)))
    config = pipeline_config(tmp_path, [site.url("/feed")])
    pipeline = build(config)
    assert run(pipeline, pipeline.poll(config.feeds[0], force=True)).ok
    assert pipeline.storage.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    row = feed_row(config, site.url("/feed"))  # another connection sees the commit
    assert row["last_success_at"] and row["items_total"] == 2
