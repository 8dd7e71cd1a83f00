"""The Clock contract over every clock."""

from __future__ import annotations

from ultrathink.core.clock import Clock, LiveClock, TestClock
from ultrathink.testing.contracts import ClockContract


class TestTestClock(ClockContract):
    settable = True

    def make_clock(self) -> Clock:
        return TestClock(1_600_000_000_000_000_000)


class TestTestClockFromZero(ClockContract):
    settable = True

    def make_clock(self) -> Clock:
        return TestClock()


class TestLiveClock(ClockContract):
    def make_clock(self) -> Clock:
        return LiveClock()
