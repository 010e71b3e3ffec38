"""The test servers themselves: what the crash test relies on."""

from __future__ import annotations

import socket
import time

from tests.helpers.servers import Site


def test_truncated_request_is_not_recorded() -> None:
    with Site(routes={"/hook": (200, {}, b"{}")}) as site:
        with socket.create_connection(("127.0.0.1", site.port)) as sock:
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mess")
        time.sleep(0.3)
        assert site.requests == []
        with socket.create_connection(("127.0.0.1", site.port)) as sock:
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                         b"Connection: close\r\n\r\n{}")
            sock.recv(1000)
        assert [r.body for r in site.requests] == [b"{}"]
