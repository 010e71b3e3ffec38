"""Helpers for the service tests (no tests here): a daemon config, a daemon subprocess,
and a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.helpers.configs import ConfigFactory
from tests.helpers.paths import REPO


def write_config(tmp_path: Path, feeds: Sequence[str], *, interval: str = "2s",
                 channels: Sequence[Mapping[str, Any]] = (), fetch: Mapping[str, Any] | None = None,
                 service: Mapping[str, Any] | None = None, name: str = "newsmon.yaml") -> Path:
    """A daemon config for tests: short poll and delivery intervals, a quick stop.

    Loopback allowed, analysis in-process (``ConfigFactory``'s base); the database is
    ``state/test.db`` beside the config. ``fetch`` and ``service`` merge over these.
    """
    return ConfigFactory(tmp_path).write(
        name=name, feeds=feeds, interval=interval, channels=channels,
        fetch={"min_interval": "1s", **(fetch or {})}, delivery={"interval": "1s"},
        service={"stop_timeout": "2s", **(service or {})})


def newsmon(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )


class DaemonProcess:
    """``newsmon run`` in a subprocess, its stderr captured to a file."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), module: str = "monitor") -> None:
        self.log_path = config.parent / "daemon.log"
        self._log = self.log_path.open("wb")
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--config", str(config), "run"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env={**clean, **(env or {})},
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> None:
        wait_for(lambda: text in self.log(), timeout, f"{text!r} in the log:\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def eventually(predicate: Callable[[], object], timeout: float, *, interval: float = 0.05) -> bool:
    """Whether ``predicate`` came true within ``timeout`` seconds (asked every ``interval``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def wait_for(predicate: Callable[[], object], timeout: float, what: str = "condition") -> None:
    if not eventually(predicate, timeout):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class NotifySocket:
    """A datagram socket in the abstract namespace, like systemd's; records messages."""

    def __init__(self) -> None:
        self.name = f"@newsmon-test-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self, key: str) -> list[tuple[float, str]]:
        """Every (time, value) received for ``KEY=``."""
        found = []
        for at, message in list(self.messages):
            for line in message.splitlines():
                if line.startswith(f"{key}="):
                    found.append((at, line.split("=", 1)[1]))
        return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
