"""Circuit breaker: every transition, the sliding window, listeners, call(), config, races."""

from __future__ import annotations

import sys
import threading

import pytest
from pydantic import ValidationError

from ultrathink.core.clock import TestClock
from ultrathink.errors import UltrathinkError
from ultrathink.hardening import (
    BreakerConfig,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
    CircuitOpenError,
)

S = 1_000_000_000


def make(clock: TestClock | None = None, **kwargs: object) -> tuple[CircuitBreaker, TestClock]:
    clock = clock or TestClock(1_000 * S)
    config = BreakerConfig(name="feed", **kwargs)  # type: ignore[arg-type]
    return CircuitBreaker(config, clock), clock


def trip(breaker: CircuitBreaker, n: int = 3) -> None:
    for i in range(n):
        breaker.record_failure(f"boom {i}")


def test_closed_allows_and_successes_keep_it_closed() -> None:
    breaker, _ = make()
    for _ in range(100):
        assert breaker.allow()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.transitions == ()


def test_trips_open_by_failure_count() -> None:
    breaker, _ = make(failure_threshold=3)
    trip(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure("timeout")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    (record,) = breaker.transitions
    assert (record.from_state, record.to_state) == (BreakerState.CLOSED, BreakerState.OPEN)
    assert "3 failures" in record.reason and "timeout" in record.reason


def test_sliding_window_forgets_old_failures() -> None:
    breaker, clock = make(failure_threshold=3, window_s=10.0)
    trip(breaker, 2)
    clock.advance_ns(10 * S)  # the first two are now exactly window_s old: out
    breaker.record_failure("late")
    assert breaker.state is BreakerState.CLOSED
    clock.advance_ns(1 * S)
    breaker.record_failure("again")
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure("third within window")
    assert breaker.state is BreakerState.OPEN


def test_trips_by_failure_rate_only_after_min_calls() -> None:
    breaker, _ = make(failure_threshold=100, failure_rate_threshold=0.5, min_calls=6)
    for _ in range(2):
        breaker.record_success()
        breaker.record_failure("err")
    breaker.record_failure("err")  # 3/5 = 60% but only 5 calls
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # 3/6 = 50% with 6 calls
    assert breaker.state is BreakerState.OPEN
    assert "failure rate 0.500 (3/6 calls)" in breaker.transitions[-1].reason


def test_failure_rate_below_threshold_stays_closed_and_window_forgets() -> None:
    breaker, clock = make(failure_threshold=100, failure_rate_threshold=0.5, min_calls=4)
    for _ in range(3):
        breaker.record_failure("err")
    clock.advance_ns(61 * S)  # old failures leave the 60 s window
    for _ in range(3):
        breaker.record_success()
    breaker.record_failure("err")  # 1/4 within the window
    assert breaker.state is BreakerState.CLOSED


def test_slow_successes_count_as_failures() -> None:
    breaker, _ = make(failure_threshold=2, slow_call_s=0.5)
    breaker.record_success(0.5)  # not slower than the limit
    breaker.record_success(0.6)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success(2.0)
    assert breaker.state is BreakerState.OPEN
    assert "slow call" in breaker.transitions[-1].reason


def test_staleness_trips_and_heartbeat_prevents_it() -> None:
    breaker, clock = make(stale_after_s=5.0)
    clock.advance_ns(4 * S)
    breaker.record_heartbeat()
    clock.advance_ns(4 * S)
    assert not breaker.check_staleness()
    assert breaker.allow()
    clock.advance_ns(1 * S)
    assert breaker.check_staleness()
    assert breaker.state is BreakerState.OPEN
    assert "stale: no heartbeat for 5.000 s" in breaker.transitions[-1].reason


def test_allow_also_detects_staleness() -> None:
    breaker, clock = make(stale_after_s=5.0)
    clock.advance_ns(6 * S)
    assert not breaker.allow()
    assert breaker.state is BreakerState.OPEN


def test_open_moves_to_half_open_after_timeout_and_not_before() -> None:
    breaker, clock = make(recovery_timeout_s=30.0)
    trip(breaker)
    clock.advance_ns(30 * S - 1)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.advance_ns(1)
    assert breaker.state is BreakerState.HALF_OPEN
    last = breaker.transitions[-1]
    assert (last.from_state, last.to_state) == (BreakerState.OPEN, BreakerState.HALF_OPEN)
    assert last.ts_ns == clock.now_ns()


def test_half_open_admits_max_probes_then_refuses() -> None:
    breaker, clock = make(half_open_max_probes=2, half_open_successes_to_close=2)
    trip(breaker)
    clock.advance_ns(30 * S)
    assert [breaker.allow() for _ in range(4)] == [True, True, False, False]


def test_half_open_closes_after_required_successes_and_clears_window() -> None:
    breaker, clock = make(half_open_max_probes=3, half_open_successes_to_close=2)
    trip(breaker)
    clock.advance_ns(30 * S)
    assert breaker.allow() and breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    trip(breaker, 2)  # the window was cleared: two new failures do not trip
    assert breaker.state is BreakerState.CLOSED


def test_probe_failure_reopens_and_restarts_recovery_timer() -> None:
    breaker, clock = make(recovery_timeout_s=10.0)
    trip(breaker)
    clock.advance_ns(10 * S)
    assert breaker.allow()
    breaker.record_failure("still down")
    assert breaker.state is BreakerState.OPEN
    assert breaker.transitions[-1].reason == "probe failed: still down"
    clock.advance_ns(10 * S - 1)
    assert not breaker.allow()
    clock.advance_ns(1)
    assert breaker.allow()


def test_unanswered_probe_reopens_after_recovery_timeout() -> None:
    breaker, clock = make(recovery_timeout_s=10.0)
    trip(breaker)
    clock.advance_ns(10 * S)
    assert breaker.allow()
    clock.advance_ns(10 * S)
    assert breaker.state is BreakerState.OPEN
    assert "probe outcome not reported" in breaker.transitions[-1].reason


def test_results_reported_while_open_are_ignored() -> None:
    breaker, _ = make()
    trip(breaker)
    breaker.record_success()
    breaker.record_failure("late")
    assert breaker.state is BreakerState.OPEN
    assert len(breaker.transitions) == 1


def test_force_open_stays_open_until_force_closed() -> None:
    breaker, clock = make()
    breaker.force_open("broker maintenance")
    clock.advance_ns(3_600 * S)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    breaker.force_closed("maintenance over")
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    reasons = [t.reason for t in breaker.transitions]
    assert reasons == ["forced open: broker maintenance", "forced closed: maintenance over"]


def test_force_closed_resets_staleness_timer() -> None:
    breaker, clock = make(stale_after_s=5.0)
    clock.advance_ns(6 * S)
    assert breaker.check_staleness()
    breaker.force_closed("feed reconnected")
    assert not breaker.check_staleness()
    assert breaker.state is BreakerState.CLOSED


def test_listeners_receive_every_transition_with_reason() -> None:
    breaker, clock = make(recovery_timeout_s=1.0)
    seen: list[BreakerTransition] = []
    breaker.on_transition(seen.append)
    breaker.on_transition(lambda t: seen.append(t) if breaker.state is not None else None)
    trip(breaker)
    clock.advance_ns(1 * S)
    assert breaker.allow()
    breaker.record_success()
    pairs = [(t.from_state.value, t.to_state.value) for t in seen[::2]]
    assert pairs == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert seen[::2] == seen[1::2]  # the second listener read the breaker without deadlock
    assert all(t.name == "feed" and t.reason for t in seen)
    assert tuple(seen[::2]) == breaker.transitions


def test_call_passes_through_and_records_failures() -> None:
    breaker, _ = make(failure_threshold=1)
    assert breaker.call(lambda a, b=0: a + b, 1, b=2) == 3

    def fail() -> int:
        raise TimeoutError("no answer")

    with pytest.raises(TimeoutError):
        breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    assert "TimeoutError: no answer" in breaker.transitions[-1].reason
    with pytest.raises(CircuitOpenError, match=r"'feed' is OPEN.*probe again in 30\.000 s"):
        breaker.call(lambda: 1)


def test_call_with_fallback() -> None:
    breaker, _ = make(failure_threshold=1)

    def fail() -> int:
        raise ConnectionError("reset")

    assert breaker.call(fail, fallback=lambda: -1) == -1
    assert breaker.state is BreakerState.OPEN
    assert breaker.call(lambda: 5, fallback=lambda: -2) == -2


def test_call_times_with_the_clock_and_slow_calls_fail() -> None:
    breaker, clock = make(failure_threshold=1, slow_call_s=1.0)

    def slow() -> str:
        clock.advance_ns(2 * S)
        return "late"

    assert breaker.call(slow) == "late"
    assert breaker.state is BreakerState.OPEN


def test_circuit_open_error_names_state_when_forced_or_probing() -> None:
    breaker, clock = make()
    breaker.force_open("ops")
    with pytest.raises(CircuitOpenError, match=r"forced open.*force_closed") as info:
        breaker.call(lambda: 1)
    assert isinstance(info.value, UltrathinkError)
    assert info.value.retry_in_s is None
    breaker.force_closed("ok")
    trip(breaker)
    clock.advance_ns(30 * S)
    assert breaker.allow()
    with pytest.raises(CircuitOpenError, match=r"HALF_OPEN.*probes are in flight"):
        breaker.call(lambda: 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 0.0}, "failure_rate_threshold"),
        ({"min_calls": 0}, "min_calls"),
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": float("nan")}, "window_s"),
        ({"slow_call_s": -1.0}, "slow_call_s"),
        ({"recovery_timeout_s": 0.0}, "recovery_timeout_s"),
        ({"half_open_max_probes": 0}, "half_open_max_probes"),
        ({"stale_after_s": 0.0}, "stale_after_s"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BreakerConfig(name="x", **kwargs)  # type: ignore[arg-type]


def test_config_rejects_unclosable_half_open_and_empty_name() -> None:
    with pytest.raises(ValidationError, match="half_open_successes_to_close must be <= "):
        BreakerConfig(name="x", half_open_max_probes=1, half_open_successes_to_close=2)
    with pytest.raises(ValidationError, match="name"):
        BreakerConfig(name="")


def test_config_is_frozen() -> None:
    config = BreakerConfig(name="x")
    with pytest.raises(ValidationError):
        config.failure_threshold = 5


def race_allow(breaker: CircuitBreaker, n_threads: int) -> list[bool]:
    barrier = threading.Barrier(n_threads)
    results: list[bool] = []

    def worker() -> None:
        barrier.wait()
        results.append(breaker.allow())

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_half_open_admits_exactly_k_probes_under_a_thread_race() -> None:
    n_threads, k = 32, 3
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to provoke races
    try:
        for _ in range(50):
            breaker, clock = make(half_open_max_probes=k, recovery_timeout_s=1.0)
            trip(breaker)
            clock.advance_ns(1 * S)  # the first allow() performs OPEN -> HALF_OPEN
            results = race_allow(breaker, n_threads)
            assert len(results) == n_threads
            assert sum(results) == k
            assert [t.to_state for t in breaker.transitions].count(BreakerState.HALF_OPEN) == 1
    finally:
        sys.setswitchinterval(old_interval)
