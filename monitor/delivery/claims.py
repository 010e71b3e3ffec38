"""Who holds an outbox claim, and whether that holder is still alive.

An owner id is ``<host>:<pid>:<token>``: the token tells two delivery runs of
one process apart (a reload builds a new deliverer). A claim by a process on
this host that no longer exists is taken over at once (a SIGKILLed daemon's
claims need not wait for their lease); a claim from another host, or of a
live process, is respected until its lease expires.
"""

from __future__ import annotations

import os
import secrets
import socket

HOST = socket.gethostname()


def new_owner() -> str:
    """A fresh owner id for one deliverer of this process."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_pid(owner: str) -> int | None:
    """The pid in an owner id, or None if the id is not of this host."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST:
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


def owner_gone(owner: str) -> bool:
    """True when ``owner`` was a process of this host that has exited."""
    pid = owner_pid(owner)
    if pid is None:
        return False
    if pid == os.getpid():
        return False  # this process: another deliverer of it (a reload), still alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child not reaped yet still answers ``kill(pid, 0)``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def describe_owner(owner: str) -> str:
    """``pid 1234`` (this host) or the id itself, for log lines."""
    pid = owner_pid(owner)
    return f"pid {pid}" if pid is not None else owner
