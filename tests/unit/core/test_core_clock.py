"""Clocks: TestClock only moves forward when told; LiveClock reads the system clocks."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ultrathink.core.clock import Clock, LiveClock, TestClock


def test_test_clock_starts_at_given_time_and_stays_there() -> None:
    clock = TestClock(start_ns=1_000)

    first, second = clock.now_ns(), clock.now_ns()

    assert first == second == 1_000


def test_test_clock_defaults_to_zero() -> None:
    assert TestClock().now_ns() == 0


def test_set_ns_moves_clock_forward() -> None:
    clock = TestClock(10)

    clock.set_ns(25)

    assert clock.now_ns() == 25


def test_set_ns_to_same_time_is_allowed() -> None:
    clock = TestClock(10)

    clock.set_ns(10)

    assert clock.now_ns() == 10


def test_set_ns_backwards_raises_and_leaves_time_unchanged() -> None:
    clock = TestClock(100)

    with pytest.raises(ValueError, match="backwards"):
        clock.set_ns(99)

    assert clock.now_ns() == 100


def test_advance_ns_adds_delta() -> None:
    clock = TestClock(5)

    clock.advance_ns(7)
    clock.advance_ns(0)

    assert clock.now_ns() == 12


def test_advance_ns_negative_raises() -> None:
    clock = TestClock(5)

    with pytest.raises(ValueError, match="backwards"):
        clock.advance_ns(-1)

    assert clock.now_ns() == 5


def test_test_clock_monotonic_defaults_to_now() -> None:
    clock = TestClock(42)

    assert clock.monotonic_ns() == 42


@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12), max_size=50))
def test_test_clock_never_goes_backwards(targets: list[int]) -> None:
    clock = TestClock(0)
    seen = [clock.now_ns()]

    for target in targets:
        try:
            clock.set_ns(target)
        except ValueError:
            assert target < seen[-1]
        seen.append(clock.now_ns())

    assert seen == sorted(seen)


def test_test_clock_is_a_clock_and_not_collected_by_pytest() -> None:
    assert isinstance(TestClock(), Clock)
    assert TestClock.__test__ is False


def test_live_clock_now_is_close_to_system_time() -> None:
    clock = LiveClock()

    before = time.time_ns()
    now = clock.now_ns()
    after = time.time_ns()

    assert before <= now <= after


def test_live_clock_monotonic_never_decreases() -> None:
    clock = LiveClock()

    readings = [clock.monotonic_ns() for _ in range(1_000)]

    assert readings == sorted(readings)


def test_live_clock_sleep_until_past_deadline_returns_without_waiting() -> None:
    clock = LiveClock()
    deadline = clock.monotonic_ns() - 10**12  # 1000 s ago: would hang if it slept

    clock.sleep_until_monotonic_ns(deadline)

    assert clock.monotonic_ns() >= deadline


def test_live_clock_sleep_until_near_deadline_reaches_it() -> None:
    clock = LiveClock()
    deadline = clock.monotonic_ns() + 2_000_000  # 2 ms

    clock.sleep_until_monotonic_ns(deadline)

    # 1 µs of slack for the ns -> float seconds conversion inside time.sleep
    assert clock.monotonic_ns() >= deadline - 1_000
