"""What a server process tree costs, read from /proc. Standard library only, Linux only.

A server is the process bench.py started plus every process it forked (granian and h2corn run
their app in a worker under a supervisor), and each of them counts with all its threads (a Rust
server's runtime threads included): /proc/<pid>/stat's utime and stime cover every thread of
the process, and /proc/<pid>/status's VmRSS its whole resident set.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every living process below it. Read from each process's ppid, not from
    /proc/<pid>/task/*/children, which only lists children of that thread and may be off."""
    parent: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat_fields(int(entry.name))
            if stat is not None:
                parent[int(entry.name)] = int(stat[1])  # field 4, ppid
    tree, frontier = [pid], [pid]
    while frontier:  # bounded: each pid enters the tree once
        below = [p for p, pp in parent.items() if pp in frontier and p not in tree]
        tree.extend(below)
        frontier = below
    return tree


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parens):
    index 0 is the state (field 3 of proc(5)), so field N is at index N - 3."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # the process ended meanwhile
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants, every thread counted."""
    ticks = 0
    for p in descendants(pid):
        fields = _stat_fields(p)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / _TICK


def rss_bytes(pid: int) -> int:
    """Resident set of ``pid`` and its descendants, summed (pages two processes share count
    twice: a supervisor's are small next to its worker's)."""
    total = 0
    for p in descendants(pid):
        try:
            status = (PROC / str(p) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024  # kB
                break
    return total
