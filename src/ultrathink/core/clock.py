"""Clocks. Logic reads time only through an injected ``Clock``.

``TestClock`` is advanced by the kernel to each event's timestamp (backtests, tests): runs are
bit-identical. ``LiveClock`` reads the system clock (paper/live), and can sleep until a
deadline, which paces a replay.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """Source of the current time in UTC nanoseconds."""

    @abstractmethod
    def now_ns(self) -> int:
        """Return the current time in nanoseconds since the epoch (UTC)."""

    def monotonic_ns(self) -> int:
        """Return a monotonic reading for measuring durations (defaults to ``now_ns``)."""
        return self.now_ns()


class TestClock(Clock):
    """A clock that only moves when told to; used by backtests and tests."""

    __test__ = False  # not a pytest test class
    __slots__ = ("_now_ns",)

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        return self._now_ns

    def set_ns(self, ts_ns: int) -> None:
        """Move the clock to ``ts_ns``; time never goes backwards."""
        if ts_ns < self._now_ns:
            raise ValueError(f"TestClock cannot go backwards: {ts_ns} < {self._now_ns}")
        self._now_ns = ts_ns

    def advance_ns(self, delta_ns: int) -> None:
        """Move the clock forward by ``delta_ns`` (must be >= 0)."""
        self.set_ns(self._now_ns + delta_ns)


class LiveClock(Clock):
    """The system clock (UTC); ``sleep_until_ns`` waits on the monotonic clock."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.perf_counter_ns()

    def sleep_until_monotonic_ns(self, deadline_ns: int) -> None:
        """Sleep until ``monotonic_ns() >= deadline_ns`` (returns at once if already past)."""
        remaining = deadline_ns - time.perf_counter_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)
