"""sd_notify: READY after start-up, watchdog pings only while the scheduler makes
progress, STOPPING on SIGTERM; all over a real AF_UNIX datagram socket."""

from __future__ import annotations

import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from monitor.runtime.systemd import Notifier, ProgressMonitor
from tests.helpers.servers import Site, rss
from tests.helpers.service import DaemonProcess, NotifySocket, wait_for, write_config
from tests.helpers.wedged import WEDGE_AFTER_ENV


def test_notifier_sends_datagrams_to_a_path_socket() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = str(Path(tmp) / "n.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(path)
        server.settimeout(2)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
        assert notifier.watchdog_interval == 1.5
        assert notifier.ready("3 feeds")
        message = server.recv(4096).decode().splitlines()
        assert message[0] == "READY=1" and "STATUS=3 feeds" in message
        assert notifier.send("STATUS=two\nlines")
        assert server.recv(4096) == b"STATUS=two lines"  # one field stays one line
        notifier.close()
        server.close()


def test_notifier_without_systemd_is_silent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.watchdog() is False
    # WATCHDOG_PID names another process: the watchdog is not ours.
    assert Notifier.from_env({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval is None


def test_progress_monitor_starves_on_a_stalled_poll_or_no_progress() -> None:
    now = [100.0]
    progress = ProgressMonitor(stall_timeout=60, idle_limit=300, clock=lambda: now[0])
    assert progress.problem() is None
    token = progress.poll_started("Feed A")
    now[0] += 59
    assert progress.problem() is None
    now[0] += 2
    assert "poll of Feed A has been running" in (progress.problem() or "")
    progress.poll_finished(token)
    assert progress.problem() is None
    now[0] += 301  # polls are due, none finished
    assert "no poll has finished" in (progress.problem() or "")


@pytest.fixture
def feed_site() -> Site:
    site = Site()
    site.routes["/feed.xml"] = (200, {"Content-Type": "application/rss+xml"},
                                rss([{"title": "Weather", "guid": "w1", "description": "Sunny."}]))
    site.start()
    yield site
    site.stop()


@pytest.mark.timeout(60)
def test_ready_then_watchdog_pings_that_stop_when_the_loop_wedges(
    tmp_path: Path, feed_site: Site
) -> None:
    notify = NotifySocket()
    config = write_config(tmp_path, [feed_site.url("/feed.xml")], interval="1s")
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "1000000",
                                        WEDGE_AFTER_ENV: "4"}, module="tests.helpers.wedged")
    try:
        wait_for(lambda: notify.fields("READY"), 30, "READY=1")
        ready_at = notify.fields("READY")[0][0]
        assert "newsmon running" in daemon.log()  # config valid, database open, jobs scheduled
        status = [v for at, v in notify.fields("STATUS") if at == ready_at]
        assert status and "1 feeds" in status[0]
        daemon.wait_log("test wedge: blocking the event loop", timeout=15)
        wedged_at = time.monotonic()
        pings = [at for at, _ in notify.fields("WATCHDOG")]
        # WATCHDOG_USEC=1s: a ping every 0.5 s while the scheduler runs.
        assert len([at for at in pings if ready_at <= at < wedged_at]) >= 4, pings
        time.sleep(3)
        late = [at for at, _ in notify.fields("WATCHDOG") if at > wedged_at + 0.6]
        assert late == [], "the watchdog was fed while the event loop was wedged"
        assert daemon.proc.poll() is None  # alive but wedged: systemd would kill it now
    finally:
        daemon.stop()
        notify.close()


@pytest.mark.timeout(60)
def test_stopping_is_sent_on_sigterm_and_the_daemon_exits_cleanly(
    tmp_path: Path, feed_site: Site
) -> None:
    notify = NotifySocket()
    config = write_config(tmp_path, [feed_site.url("/feed.xml")], interval="1s")
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify.name})
    try:
        wait_for(lambda: notify.fields("READY"), 30, "READY=1")
        daemon.wait_log("poll ", timeout=15)
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        assert notify.fields("STOPPING")
        assert "SIGTERM received" in daemon.log()
    finally:
        daemon.stop()
        notify.close()
