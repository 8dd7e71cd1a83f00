"""This process's CPU time and resident memory, as degraded mode samples them.

``ProcessSampler`` is what ``DegradedModeMonitor`` reads (tests pass a fake);
``OsProcessSampler`` reads the OS. Kept apart from ``degraded.py`` (which re-exports both).
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

_MIB = 1 << 20


class ProcessSampler(Protocol):
    """This process's resource use: ``cpu_seconds()`` so far (user + system, all threads) and
    ``rss_mb()`` now (MiB). Tests pass a fake; production uses ``OsProcessSampler``.
    """

    def cpu_seconds(self) -> float: ...

    def rss_mb(self) -> float: ...


class OsProcessSampler:
    """Process CPU time from ``os.times()``, RSS from ``/proc/self/statm`` x page size.

    Where ``statm_path`` cannot be read (no ``/proc``), ``rss_mb`` falls back to the PEAK
    RSS of ``resource.getrusage``: it never falls, so memory then leaves degraded mode only
    by an operator ``clear``.
    """

    __slots__ = ("_page_bytes", "_statm_path")

    def __init__(self, statm_path: str = "/proc/self/statm") -> None:
        self._statm_path = statm_path
        # No sysconf (Windows) means no /proc either: the page size is then never used.
        self._page_bytes = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def cpu_seconds(self) -> float:
        """Return user + system CPU seconds of this process (all threads)."""
        return sum(os.times()[:2])  # user + system

    def rss_mb(self) -> float:
        """Return the current RSS in MiB (peak RSS where ``/proc`` is missing)."""
        try:
            with open(self._statm_path, "rb") as statm:
                resident_pages = int(statm.read().split()[1])
        except (OSError, IndexError, ValueError):
            return _peak_rss_mb()
        return resident_pages * self._page_bytes / _MIB


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # Windows: no resource module and no /proc
        return 0.0
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return max_rss / _MIB if sys.platform == "darwin" else max_rss / 1024
