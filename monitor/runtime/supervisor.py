"""A supervised pool of worker processes: a dead or runaway worker is replaced.

``concurrent.futures.ProcessPoolExecutor`` breaks for good when one of its
processes dies (the OOM killer under ``MemoryMax=``): every later call raises
``BrokenProcessPool``. Here each worker is a process of its own with a pipe,
given one job at a time, so a death is charged to the one job it was running:

- a worker that dies is replaced, and the caller gets :class:`WorkerLost`
  (the processor retries the item a few times, then records it as failed);
- a worker whose job uses more than ``cpu_seconds`` of CPU is killed and
  replaced (:class:`WorkerLost` too): a catastrophic regex or a parser bug
  cannot hold a core, or delay a SIGTERM, for minutes;
- a worker that cannot start (its initializer fails) leaves a tombstone that
  fails calls at once with :class:`WorkerStartError` and is retried later.

Everything here runs on the event loop (the pipes and the processes' exit
sentinels are watched with ``add_reader``); no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from monitor.errors import NewsmonError
from monitor.runtime.worker import WorkerSettings, init_worker

__all__ = ["ITEM_CPU_SECONDS", "PoolHealth", "WorkerLost", "WorkerPool", "WorkerStartError"]

log = logging.getLogger(__name__)

ITEM_CPU_SECONDS = 30.0  # a normal item takes ~25 ms; the worst real pages ~2 s
RESTART_DELAY = 10.0  # a worker that failed to start is tried again after this long
_CHECK_EVERY = 0.25  # seconds between CPU checks of a busy worker
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class WorkerLost(NewsmonError):
    """The worker running a job died, or was killed over its CPU deadline."""


class WorkerStartError(NewsmonError):
    """No worker could be started (its initializer failed)."""


@dataclass
class PoolHealth:
    """What the daemon reports about its workers (``/healthz``, the watchdog, the log)."""

    workers: int = 0
    restarts: int = 0  # workers replaced since start (died, killed, failed to start)
    deadline_kills: int = 0
    last_loss: str | None = None
    start_error: str | None = None  # set while workers cannot start


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    start_error: str | None = None
    failed_at: float = 0.0
    cpu_at_job_start: float = 0.0
    busy: bool = False
    retired: bool = False


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, from /proc (None where unreadable)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (IndexError, ValueError):
        return None


def _death(process: BaseProcess) -> str:
    """How a worker process ended, for the log and the failed item's reason."""
    process.join(timeout=1)  # it is exiting: reap it for its exit code
    code = process.exitcode
    if code is not None and code < 0:
        how = f"killed by {signal.Signals(-code).name}"
        if code == -signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = f"exit code {code}"
    return f"the worker process died ({how})"


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """A worker process: build the stages once, then run one job per message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        init_worker(settings)
    except BaseException as exc:  # reported to the parent, which shows it
        conn.send(("init_error", f"{type(exc).__name__}: {exc}"[:500]))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        func, arg = message
        try:
            reply: tuple[str, Any] = ("ok", func(arg))
        except Exception as exc:
            reply = ("raise", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an unpicklable result or exception
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:500]))


class WorkerPool:
    """``size`` worker processes, one job each at a time (see the module doc)."""

    def __init__(self, size: int, settings: WorkerSettings, *,
                 cpu_seconds: float = ITEM_CPU_SECONDS) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.settings = settings
        self.cpu_seconds = cpu_seconds
        self.health = PoolHealth(workers=size)
        self._context = get_context("spawn")  # a fork of a loop with threads is unsafe
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- workers ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers (they get ready in the background); idempotent."""
        if self._idle is not None or self._closed:
            return
        self._idle = asyncio.Queue()
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=worker_main, args=(child, self.settings),
                                        name="newsmon-worker", daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        task = loop.create_task(self._await_ready(worker))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _await_ready(self, worker: _Worker) -> None:
        assert self._idle is not None
        try:
            kind, value = await self._receive(worker)
        except WorkerLost as exc:
            kind, value = "init_error", str(exc)
        if kind != "ready":
            worker.start_error, worker.failed_at = str(value), time.monotonic()
            self.health.start_error = worker.start_error
            log.error("a worker process could not start: %s", value)
        else:
            self.health.start_error = None
        if not self._closed:
            self._idle.put_nowait(worker)

    def _retire(self, worker: _Worker, *, replace: bool) -> None:
        """Kill ``worker`` (if still running) and start another in its place."""
        if worker.retired:
            return
        worker.retired = True
        self._unwatch(worker)
        _kill(worker)
        if worker in self._workers:
            self._workers.remove(worker)
        if replace and not self._closed:
            self.health.restarts += 1
            self._spawn()

    async def _acquire(self) -> _Worker:
        self.start()
        assert self._idle is not None
        while True:
            worker = await self._idle.get()
            if worker.retired:
                continue
            if worker.start_error is None:
                return worker
            # A tombstone: fail at once, and try a new worker after RESTART_DELAY.
            if time.monotonic() - worker.failed_at >= RESTART_DELAY:
                self._retire(worker, replace=True)
            else:
                self._idle.put_nowait(worker)
            raise WorkerStartError(worker.start_error)

    # -- one job ----------------------------------------------------------------------

    def _unwatch(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.conn.fileno())
        with contextlib.suppress(Exception):
            loop.remove_reader(worker.process.sentinel)

    async def _receive(self, worker: _Worker) -> tuple[str, Any]:
        """The worker's next message; WorkerLost when it exits first."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[tuple[str, Any]] = loop.create_future()

        def readable() -> None:
            if reply.done():
                return
            self._unwatch(worker)
            try:
                reply.set_result(worker.conn.recv())
            except (EOFError, OSError):  # its end of the pipe closed: it is exiting
                reply.set_exception(WorkerLost(_death(worker.process)))

        def exited() -> None:
            if reply.done():
                return
            with contextlib.suppress(OSError):
                if worker.conn.poll():
                    readable()  # it answered, then exited
                    return
            self._unwatch(worker)
            reply.set_exception(WorkerLost(_death(worker.process)))

        loop.add_reader(worker.conn.fileno(), readable)
        loop.add_reader(worker.process.sentinel, exited)
        try:
            return await reply
        finally:
            if not reply.done():
                self._unwatch(worker)

    async def call(self, func: Callable[[Any], Any], arg: Any) -> Any:
        """Run ``func(arg)`` in a worker; its exception is raised here.

        Raises WorkerLost when the worker died or went over its CPU deadline
        (it is replaced), WorkerStartError when no worker can start.
        """
        worker = await self._acquire()
        worker.busy = True
        replace = False
        try:
            start_cpu = _cpu_seconds(worker.process.pid)
            try:
                worker.conn.send((func, arg))
            except OSError as exc:
                replace = True
                raise WorkerLost(f"the worker process is gone ({exc})") from None
            receiving = asyncio.ensure_future(self._receive(worker))
            try:
                kind, value = await self._watch(worker, receiving, start_cpu)
            except WorkerLost:
                replace = True
                raise
            except BaseException:  # cancelled: the worker is busy with a job nobody awaits
                receiving.cancel()
                replace = True
                raise
        finally:
            worker.busy = False
            if replace:
                self._retire(worker, replace=True)
            elif not self._closed and self._idle is not None:
                self._idle.put_nowait(worker)
        if kind == "ok":
            return value
        if kind == "raise" and isinstance(value, BaseException):
            raise value
        raise RuntimeError(f"worker error: {value}")

    async def _watch(self, worker: _Worker, receiving: asyncio.Future[tuple[str, Any]],
                     start_cpu: float | None) -> tuple[str, Any]:
        """Wait for the reply, killing the worker once its job is over the CPU deadline."""
        started = time.monotonic()
        while True:
            done, _ = await asyncio.wait({receiving}, timeout=_CHECK_EVERY)
            if done:
                return receiving.result()
            used = _cpu_seconds(worker.process.pid)
            spent = (used - start_cpu if used is not None and start_cpu is not None
                     else (time.monotonic() - started) / 2)  # no /proc: half the wall time
            if spent > self.cpu_seconds:
                receiving.cancel()
                self.health.deadline_kills += 1
                reason = (f"the job went over its CPU deadline ({spent:.1f}s of"
                          f" {self.cpu_seconds:g}s): worker killed")
                self.health.last_loss = reason
                raise WorkerLost(reason)

    # -- figures and shutdown ---------------------------------------------------------

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        self._closed = True
        for worker in list(self._workers):
            if not worker.busy and worker.start_error is None:
                with contextlib.suppress(Exception):
                    worker.conn.send(None)
        deadline = time.monotonic() + 2.0
        for worker in list(self._workers):
            with contextlib.suppress(RuntimeError):  # no running loop: nothing is watched
                self._unwatch(worker)
            if not worker.busy:
                worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            _kill(worker)
        self._workers.clear()


@dataclass
class FailureStreak:
    """Items that failed in a row, and since when (reset by any success)."""

    failed: int = 0
    since: float | None = None
    last_reason: str | None = None
    processed: int = 0
    last_processed: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic)

    def success(self) -> None:
        self.processed += 1
        self.last_processed = self.clock()
        self.failed, self.since, self.last_reason = 0, None, None

    def failure(self, reason: str) -> None:
        self.failed += 1
        self.last_reason = reason
        if self.since is None:
            self.since = self.clock()


def _kill(worker: _Worker) -> None:
    """Kill a worker process if it still runs, reap it, and close its pipe (never raises)."""
    with contextlib.suppress(Exception):
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=2)
    with contextlib.suppress(Exception):
        worker.conn.close()
