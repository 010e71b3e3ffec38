"""kill -9 while alerts flow: every alert still arrives, at least once (spec G43).

``newsmon run`` runs as a subprocess against a real webhook receiver on
127.0.0.1, with a delivery job every 0.3 s. Alerts are written into the outbox
(as ``record_item`` writes them) before and while the daemon runs, and the
daemon is killed with SIGKILL at a random moment after it has started, many
times over. Then it runs once more until the outbox is empty, and every alert
must have been received. Duplicates are allowed (at-least-once) but bounded:
at most one message per kill (the one in flight), each logged by the next run.

Start-up (imports: about 2 s of CPU) would dominate 50 restarts, so the killed
daemons are forked from a "zygote" process that has imported ``monitor.cli``
once: each child runs the real entry point (``monitor.cli`` with
``--config ... run``) in its own process, is SIGKILLed, and is reaped by the
zygote. The final drain is a plain ``python -m monitor run``. Two independent
loops (each its own database and receiver) run side by side.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.storage import Storage, StoreError, open_storage
from tests.helpers.configs import ConfigFactory
from tests.helpers.delivery import add_alert
from tests.helpers.paths import REPO
from tests.helpers.servers import Site

KILLS_PER_LOOP = 26  # two loops: 52 kills
KEY = re.compile(r"a\d+-ceasefire-hook")


def slow_ok(handler: object) -> tuple[int, dict[str, str], bytes]:
    time.sleep(0.02)  # a send takes a moment, so kills land mid-send too
    return 200, {"Content-Type": "application/json"}, b"{}"


def write_config(folder: Path, port: int) -> Path:
    """No feeds, one webhook channel, a delivery job every 0.3 s with quick retries."""
    return ConfigFactory(folder).write(
        database="outbox.db",
        channels=[{"name": "hook", "url": f"json://127.0.0.1:{port}/hook", "rate_limit": 0}],
        delivery={"interval": "0.3s", "timeout": "2s", "retry_base": "0.2s", "retry_max": "1s",
                  "collapse_over": 6})


ZYGOTE = r"""
import os, signal, sys
import apprise
import monitor.cli
apprise.Apprise().add("json://127.0.0.1:9/warm-up")  # load apprise's plugins once
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.split()
    if command == "run":
        config, log = args
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDWR)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(null, 0); os.dup2(null, 1); os.dup2(out, 2)
            sys.argv = ["newsmon", "--config", config, "run"]
            code = 0
            try:
                monitor.cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            os._exit(code)
        print(pid, flush=True)
    elif command == "kill":
        pid = int(args[0])
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status),
              flush=True)
"""


class Zygote:
    """A process that has imported newsmon and forks daemons on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPO, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.ask("") == "ready"

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def run(self, config: Path, log: Path) -> int:
        return int(self.ask(f"run {config} {log}"))

    def kill(self, pid: int) -> int:
        """SIGKILL the daemon; returns its exit status (-9)."""
        return int(self.ask(f"kill {pid}"))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run"], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), env={**os.environ},
    )


def running(log: Path) -> bool:
    return log.exists() and b"newsmon running" in log.read_bytes()


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def insert(store: Storage, seed: int) -> int:
    """One alert, as the pipeline writes it; retried like a poll is when the store
    reports a busy database (a deferred transaction that reads, then writes,
    can lose the race to the daemon's delivery writes)."""
    for _ in range(50):
        try:
            return add_alert(store, "hook", feed=f"http://feeds.test/{seed}.xml")
        except StoreError:
            time.sleep(0.01)
    raise AssertionError("the database stayed busy")


def crash_loop(folder: Path, seed: int, results: dict[str, object]) -> None:
    rng = random.Random(seed)
    with Site(routes={"/hook": slow_ok}) as receiver:
        config = write_config(folder, receiver.port)
        store = open_storage(folder / "outbox.db")
        expected: list[str] = []

        def add(count: int) -> None:
            for _ in range(count):
                alert_id = insert(store, seed)
                expected.append(store.db.execute(
                    "SELECT alert_key FROM alerts WHERE id = ?", (alert_id,)).fetchone()[0])

        kills = 0
        zygote = Zygote()
        try:
            for run in range(KILLS_PER_LOOP):
                add(rng.randint(2, 6))
                log = folder / f"run-{run}.log"
                pid = zygote.run(config, log)
                try:
                    started = wait_for(lambda: running(log), 15)  # noqa: B023
                    assert started, log.read_text(errors="replace")[-2000:]
                    # Alerts keep arriving while it runs; the kill comes at a random moment.
                    deadline = time.monotonic() + rng.uniform(0.0, 0.6)
                    while time.monotonic() < deadline:
                        if rng.random() < 0.3:
                            add(1)
                        time.sleep(0.03)
                finally:
                    kills += zygote.kill(pid) == -signal.SIGKILL
        finally:
            zygote.close()

        # One last run, until the outbox is drained.
        log = folder / "final.log"
        proc = start(config, log)
        db = sqlite3.connect(folder / "outbox.db")
        try:
            drained = wait_for(lambda: db.execute(
                "SELECT COUNT(*) FROM alerts WHERE status != 'sent'").fetchone()[0] == 0, 30)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            db.close()
            store.close()
        received: list[str] = []
        repeated_messages = 0  # messages carrying an alert already received
        for request in receiver.requests:
            if request.method == "POST":
                keys = KEY.findall(request.json()["message"])
                repeated_messages += any(k in received for k in keys)
                received.extend(keys)
        resends_logged = sum(
            (folder / f"run-{n}.log").read_text(errors="replace").count("may arrive twice")
            for n in range(1, KILLS_PER_LOOP)) + log.read_text(errors="replace").count(
            "may arrive twice")
        results.update(kills=kills, drained=drained, expected=expected, received=received,
                       repeated=repeated_messages, resends_logged=resends_logged)


def guarded(folder: Path, seed: int, results: dict[str, object]) -> None:
    """Run a crash loop in a thread, keeping its failure for the test to report."""
    try:
        crash_loop(folder, seed, results)
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigkill_at_random_moments_loses_no_alert(tmp_path: Path) -> None:
    results: list[dict[str, object]] = [{}, {}]
    threads = []
    for index in range(2):
        folder = tmp_path / f"loop{index}"
        folder.mkdir()
        threads.append(threading.Thread(target=guarded, args=(folder, 1000 + index,
                                                              results[index])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total_kills = 0
    for result in results:
        assert "error" not in result, result["error"]
        total_kills += int(result["kills"])  # type: ignore[call-overload]
        assert result["drained"], "the outbox was not drained after the last restart"
        expected = set(result["expected"])  # type: ignore[call-overload]
        received = list(result["received"])  # type: ignore[call-overload]
        missing = expected - set(received)
        assert not missing, f"lost {len(missing)} of {len(expected)} alerts: {sorted(missing)[:10]}"
        assert len(expected) >= 100
        # Claims + a mark right after each send: a kill re-sends at most the one
        # message in flight, and the next run says so in its log.
        repeated = int(result["repeated"])  # type: ignore[call-overload]
        kills = int(result["kills"])  # type: ignore[call-overload]
        logged = int(result["resends_logged"])  # type: ignore[call-overload]
        assert repeated <= kills, (repeated, kills)
        assert repeated <= logged, (repeated, logged)
        print(f"kills {kills}: {repeated} message(s) sent twice, {logged} re-send(s) logged")
    assert total_kills >= 50
