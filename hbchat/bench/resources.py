"""What the operating system tells about processes: our fd limit and CPU time, the server's CPU and RSS (/proc)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_proc(pid: int) -> dict[str, float] | None:
    """CPU seconds and RSS of a (server) process, from /proc; ``None`` where unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return {"cpu_s": cpu, "rss_kib": rss, "at": time.monotonic()}
