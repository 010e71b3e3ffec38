"""What the benches share: the corpus of real pages, and a loopback aiohttp site in a
process of its own (so that its CPU is not counted against newsmon).

A bench starts a site with ``server_process(target, *args)``: ``target(port_queue,
*args)`` runs in a spawned process, builds its ``web.Application`` and hands it to
``serve_app``, which binds 127.0.0.1 on a free port, puts the port on the queue and
serves until the process is terminated. ``serve_pages`` is the site of the page
corpus (bench/pipeline.py, bench/cluster_bench.py, bench/web_fts_overhead.py).
"""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
HTML_DIR = REPO.parent / "shared" / "fixtures" / "html"


def load_pages() -> list[bytes]:
    """The 181 real article pages of ../shared/fixtures/html/, decompressed."""
    files = sorted((HTML_DIR / "html").glob("*.html.gz"))
    if not files:
        raise SystemExit(f"no pages under {HTML_DIR}: the shared data set must sit beside the checkout")
    return [gzip.decompress(f.read_bytes()) for f in files]


def page_feed(port: int, name: str, count: int) -> bytes:
    """RSS of ``count`` items named after feed ``name``, linking to /page/<name>/<i>."""
    items = "".join(
        f"<item><title>Benchmark article {i}</title>"
        f"<link>http://127.0.0.1:{port}/page/{name}/{i}</link>"
        f"<guid>{name}-{i}</guid><description>Article {i} of the benchmark.</description></item>"
        for i in range(count))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape(name)}</title>{items}</channel></rss>").encode()


def serve_app(app: web.Application, port_queue: multiprocessing.Queue, *, backlog: int = 128) -> None:
    """Serve ``app`` on 127.0.0.1 (a free port, also in ``app["port"]``) until terminated."""
    from aiohttp import web

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=backlog)
        await site.start()
        port = runner.addresses[0][1]
        app["port"] = port
        port_queue.put(port)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_pages(port_queue: multiprocessing.Queue, pages: list[bytes]) -> None:
    """The corpus site: /feed/<name>.xml?n=K (K items, default all) and /page/<name>/<i>."""
    from aiohttp import web

    async def feed(request: web.Request) -> web.Response:
        count = min(len(pages), int(request.query.get("n", len(pages))))
        return web.Response(body=page_feed(request.app["port"], request.match_info["name"], count),
                            content_type="application/rss+xml")

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=pages[int(request.match_info["i"])], content_type="text/html",
                            charset="utf-8")

    app = web.Application()
    app.router.add_get("/feed/{name}.xml", feed)
    app.router.add_get("/page/{name}/{i}", page)
    serve_app(app, port_queue)


@contextmanager
def server_process(target: Callable[..., None], *args: Any, timeout: float = 60) -> Iterator[int]:
    """Run ``target(port_queue, *args)`` in a spawned process; yields the port it serves on."""
    ctx = multiprocessing.get_context("spawn")
    port_queue: multiprocessing.Queue = ctx.Queue()
    server = ctx.Process(target=target, args=(port_queue, *args), daemon=True)
    server.start()
    try:
        yield int(port_queue.get(timeout=timeout))
    finally:
        server.terminate()
        server.join(10)
