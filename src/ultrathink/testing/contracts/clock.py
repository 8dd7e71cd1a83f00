"""The ``Clock`` contract suite (``core/clock.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Protocol, cast

import pytest

from ultrathink.core.clock import Clock


class SettableClock(Protocol):
    """A clock a test (or the kernel) moves by hand, never backwards."""

    def now_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    def set_ns(self, ts_ns: int) -> None: ...

    def advance_ns(self, delta_ns: int) -> None: ...


class ClockContract(ABC):
    """The ``Clock`` contract (``core/clock.py``).

    ``now_ns`` is an int; ``monotonic_ns`` never goes backwards. A settable clock
    (``settable = True``: ``set_ns``/``advance_ns``) moves forward or stays, and refuses to
    go back with ``ValueError``, unchanged.
    """

    settable: ClassVar[bool] = False

    @abstractmethod
    def make_clock(self) -> Clock:
        """A new clock."""

    def _settable(self) -> SettableClock:
        if not self.settable:
            pytest.skip("this clock is not settable")
        return cast(SettableClock, self.make_clock())

    def test_now_ns_is_an_int(self) -> None:
        now = self.make_clock().now_ns()
        assert isinstance(now, int) and not isinstance(now, bool)

    def test_monotonic_ns_never_goes_backwards(self) -> None:
        clock = self.make_clock()
        readings = [clock.monotonic_ns() for _ in range(1_000)]
        assert all(isinstance(r, int) for r in readings)
        assert readings == sorted(readings)

    def test_set_and_advance_move_a_settable_clock_forward(self) -> None:
        clock = self._settable()
        start, mono = clock.now_ns(), clock.monotonic_ns()
        clock.set_ns(start + 5)
        clock.set_ns(start + 5)  # staying put is allowed
        clock.advance_ns(7)
        clock.advance_ns(0)
        assert clock.now_ns() == start + 12
        assert clock.monotonic_ns() >= mono

    def test_a_settable_clock_never_goes_backwards(self) -> None:
        clock = self._settable()
        clock.set_ns(clock.now_ns() + 100)
        now = clock.now_ns()
        with pytest.raises(ValueError):
            clock.set_ns(now - 1)
        with pytest.raises(ValueError):
            clock.advance_ns(-1)
        assert clock.now_ns() == now
