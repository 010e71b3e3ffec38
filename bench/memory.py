"""Peak memory of a process, measured the way that is true for child processes.

``ru_maxrss`` is carried across ``execve`` on Linux, so a child started from a
large process reports its parent's peak; ``VmHWM`` is the process's own.
"""

from __future__ import annotations


def peak_rss_mb(pid: int | str = "self") -> float:
    """The peak resident set size of ``pid`` (default: this process), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
