"""Resident memory of process trees: now, peak, and resetting the peak (psutil; Linux peaks).

Each function takes root pids (none: this process) and covers each root with all its
descendants, so a Spark JVM counts its Python workers and a worker counts what it spawned.
The peak is Linux's VmHWM of each process, summed (an upper bound on the tree's peak);
``reset_peak_rss`` restarts it (``clear_refs``). Without VmHWM (not Linux) the peak is the
current RSS.
"""

from __future__ import annotations

import contextlib
import os

import psutil


def process_tree(*pids: int) -> list[psutil.Process]:
    """The processes rooted at ``pids`` (default: this one) and their descendants, once each."""
    seen: dict[int, psutil.Process] = {}
    for pid in pids or (os.getpid(),):
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                seen.setdefault(p.pid, p)
    return list(seen.values())


def _peak(p: psutil.Process) -> int | None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    with contextlib.suppress(psutil.Error):
        info = p.memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    return None


def _sum(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def peak_rss_bytes(*pids: int) -> int | None:
    """Summed peak RSS of the trees at ``pids`` since start or the last reset; None if gone."""
    return _sum([_peak(p) for p in process_tree(*pids)])


def rss_bytes(*pids: int) -> int | None:
    """Summed resident set of the trees at ``pids`` now; None if they are gone."""

    def rss(p: psutil.Process) -> int | None:
        with contextlib.suppress(psutil.Error):
            return int(p.memory_info().rss)
        return None

    return _sum([rss(p) for p in process_tree(*pids)])


def reset_peak_rss(*pids: int) -> bool:
    """Restart the peak counters of the trees at ``pids``; False where that is unsupported."""
    ok = True
    for p in process_tree(*pids):
        try:
            with open(f"/proc/{p.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok
