"""Crash-test scaffolding (no tests here): a "zygote" that forks newsmon processes, a slow
webhook route, and the count of re-sends the restarted processes logged.

Start-up (imports: about 2 s of CPU) would dominate dozens of restarts, so the crash
tests fork their processes from a zygote that has imported ``monitor.cli`` (and
whatever else it is told to preload) once: each child runs the real entry point
(``monitor.cli.main``) with its own argv in its own process, is SIGKILLed (or
SIGTERMed), and is reaped by the zygote.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.helpers.paths import REPO
from tests.helpers.servers import Response

__all__ = ["RESEND_LOGGED", "Zygote", "ok_after", "resends_logged"]

# What a process logs on start for an alert whose send a kill may have interrupted.
RESEND_LOGGED = "may arrive twice"

# Lines on stdin, tab-separated: ``run <log> <argv...>`` prints the child's pid;
# ``kill <pid>`` / ``term <pid>`` print its exit status (minus the signal number).
_SCRIPT = r"""
import importlib, os, signal, sys, time
import apprise
import monitor.cli
for name in sys.argv[1:]:
    importlib.import_module(name)
apprise.Apprise().add("json://127.0.0.1:9/warm-up")  # load apprise's plugins once
print("ready", flush=True)
for line in sys.stdin:
    command, *args = line.rstrip("\n").split("\t")
    if command == "run":
        log, *argv = args
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDWR)
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(null, 0); os.dup2(null, 1); os.dup2(out, 2)
            sys.argv = ["newsmon", *argv]
            code = 0
            try:
                monitor.cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            os._exit(code)
        print(pid, flush=True)
    elif command in ("kill", "term"):
        pid = int(args[0])
        os.kill(pid, signal.SIGKILL if command == "kill" else signal.SIGTERM)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:  # a SIGTERM that was not obeyed
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status),
              flush=True)
"""


class Zygote:
    """A process that has imported newsmon (and ``preload``) and forks it on request.

    Safe to share between threads: one request and its answer at a time.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, *preload], cwd=REPO,
                                     text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lock = threading.Lock()
        assert self.ask("") == "ready"

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            if line:
                self.proc.stdin.write(line + "\n")
                self.proc.stdin.flush()
            return self.proc.stdout.readline().strip()

    def run(self, log: Path, *argv: str) -> int:
        """Fork ``newsmon <argv>`` with its stderr in ``log``; returns its pid."""
        return int(self.ask("\t".join(["run", str(log), *argv])))

    def kill(self, pid: int) -> int:
        """SIGKILL the process and reap it; returns its exit status (-9)."""
        return int(self.ask(f"kill\t{pid}"))

    def term(self, pid: int) -> int:
        """SIGTERM the process (SIGKILL after 20 s) and reap it; returns its exit status."""
        return int(self.ask(f"term\t{pid}"))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=20)


def ok_after(seconds: float) -> Callable[[Any], Response]:
    """A webhook route that answers 200 after ``seconds``: a send takes a moment, so
    kills land mid-send too."""

    def route(_request: Any) -> Response:
        time.sleep(seconds)
        return 200, {"Content-Type": "application/json"}, b"{}"

    return route


def resends_logged(logs: Iterable[Path]) -> int:
    """How many possible re-sends the processes writing ``logs`` said they made."""
    return sum(log.read_text(errors="replace").count(RESEND_LOGGED) for log in logs if log.exists())
