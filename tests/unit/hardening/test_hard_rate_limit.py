"""Rate limiting: exact refill, bursts, windows, all-or-nothing debit, cancel budget, threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ultrathink.core.clock import TestClock
from ultrathink.errors import ConfigError
from ultrathink.hardening.rate_limit import (
    RATE_LIMITED,
    OrderRateLimiter,
    RateLimitConfig,
    RateWindow,
    TokenBucket,
)

MS = 1_000_000
S = 1_000_000_000


def _limiter(
    windows: tuple[tuple[int, float], ...] = ((100, 1.0),),
    per_symbol: tuple[tuple[int, float], ...] = (),
    cancel: tuple[tuple[int, float], ...] = ((1000, 1.0),),
) -> tuple[OrderRateLimiter, TestClock]:
    def wins(pairs: tuple[tuple[int, float], ...]) -> tuple[RateWindow, ...]:
        return tuple(RateWindow(limit=limit, per_s=per_s) for limit, per_s in pairs)

    config = RateLimitConfig(
        windows=wins(windows), per_symbol=wins(per_symbol), cancel_windows=wins(cancel)
    )
    clock = TestClock()
    return OrderRateLimiter(config, clock), clock


# --- TokenBucket -------------------------------------------------------------------------


def test_bucket_starts_full_and_burst_drains_it() -> None:
    bucket = TokenBucket(10.0, 5, TestClock())

    granted = [bucket.try_acquire() for _ in range(7)]

    assert granted == [True] * 5 + [False] * 2
    assert bucket.available() == 0.0


def test_refill_is_exact_after_t_seconds() -> None:
    clock = TestClock()
    bucket = TokenBucket(10.0, 100, clock)
    assert bucket.try_acquire(100)

    clock.advance_ns(250 * MS)

    assert bucket.available() == 2.5
    assert bucket.try_acquire(2)
    assert not bucket.try_acquire(1)
    assert bucket.available() == 0.5


def test_refill_caps_at_burst() -> None:
    clock = TestClock()
    bucket = TokenBucket(10.0, 5, clock)
    assert bucket.try_acquire(5)

    clock.advance_ns(3600 * S)

    assert bucket.available() == 5.0
    assert bucket.try_acquire(5)
    assert not bucket.try_acquire(1)


def test_fractional_rate_is_exact_over_a_long_run() -> None:
    clock = TestClock()
    bucket = TokenBucket(Fraction(1000, 60), 1000, clock)
    assert bucket.try_acquire(1000)

    clock.advance_ns(60 * S)

    assert bucket.available() == 1000.0
    assert bucket.rate_per_s == Fraction(50, 3)


def test_failed_acquire_takes_nothing() -> None:
    bucket = TokenBucket(1.0, 3, TestClock())
    assert bucket.try_acquire(2)

    assert not bucket.try_acquire(2)

    assert bucket.available() == 1.0


def test_wait_ns_says_when_tokens_return() -> None:
    clock = TestClock()
    bucket = TokenBucket(100.0, 1, clock)
    assert bucket.try_acquire()

    assert bucket.wait_ns() == 10 * MS
    clock.advance_ns(10 * MS)
    assert bucket.wait_ns() == 0


@pytest.mark.parametrize(
    ("rate", "burst", "match"),
    [
        (0.0, 1, "rate_per_s must be a finite number > 0, was 0.0"),
        (float("inf"), 1, "rate_per_s .* was inf"),
        (float("nan"), 1, "rate_per_s .* was nan"),
        (1.0, 0, "burst must be an integer >= 1, was 0"),
        (1.0, True, "burst must be an integer >= 1, was True"),
    ],
)
def test_bucket_rejects_bad_parameters(rate: float, burst: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TokenBucket(rate, burst, TestClock())


@pytest.mark.parametrize("n", [0, -1, 6])
def test_acquire_rejects_counts_outside_one_to_burst(n: int) -> None:
    bucket = TokenBucket(1.0, 5, TestClock())

    with pytest.raises(ValueError, match=rf"n must be an integer in \[1, burst=5\], was {n}"):
        bucket.try_acquire(n)


def test_clock_stepping_back_adds_no_tokens() -> None:
    clock = TestClock(start_ns=10 * S)
    bucket = TokenBucket(1.0, 1, clock)
    assert bucket.try_acquire()
    bucket._last_ns = 20 * S  # simulate a reading ahead of the clock

    assert bucket.available() == 0.0


# --- OrderRateLimiter --------------------------------------------------------------------


def test_default_config_is_100_orders_per_second() -> None:
    limiter = OrderRateLimiter(RateLimitConfig(), TestClock())

    results = [limiter.check_order("AAPL") for _ in range(101)]

    assert results[:100] == [None] * 100
    assert results[100] == (
        f"{RATE_LIMITED}: account limit 100 per 1 s exceeded; retry after 0.010 s"
    )


def test_sustained_100_per_s_is_then_denied_by_the_minute_window() -> None:
    limiter, clock = _limiter(windows=((100, 1.0), (1000, 60.0)))
    results = []

    for _ in range(1200):  # one order every 10 ms = 100/s
        results.append(limiter.check_order("AAPL"))
        clock.advance_ns(10 * MS)

    # 1000 - k + k/6 tokens remain in the minute bucket before order k: short at k = 1199.
    assert results[:1199] == [None] * 1199
    assert results[1199] == (
        f"{RATE_LIMITED}: account limit 1000 per 60 s exceeded; retry after 0.010 s"
    )


def test_second_window_denies_a_burst_first() -> None:
    limiter, _ = _limiter(windows=((100, 1.0), (1000, 60.0)))

    results = [limiter.check_order("AAPL") for _ in range(101)]

    assert results[100] is not None
    assert "account limit 100 per 1 s" in results[100]


def test_symbols_have_independent_buckets() -> None:
    limiter, _ = _limiter(windows=((100, 1.0),), per_symbol=((2, 1.0),))

    aapl = [limiter.check_order("AAPL") for _ in range(3)]
    msft = [limiter.check_order("MSFT") for _ in range(2)]

    assert aapl[:2] == [None, None]
    assert aapl[2] is not None
    assert aapl[2].startswith(f"{RATE_LIMITED}: symbol AAPL limit 2 per 1 s exceeded")
    assert msft == [None, None]


def test_symbol_denial_debits_no_account_bucket() -> None:
    limiter, _ = _limiter(windows=((5, 1.0),), per_symbol=((1, 1.0),))
    assert limiter.check_order("AAPL") is None

    for _ in range(10):
        assert limiter.check_order("AAPL") is not None

    # 4 account tokens are left: AAPL's denials took none of them.
    assert [limiter.check_order(s) for s in ("B", "C", "D", "E")] == [None] * 4
    assert limiter.check_order("F") is not None


def test_account_denial_debits_no_symbol_bucket() -> None:
    limiter, clock = _limiter(windows=((1, 1.0),), per_symbol=((1, 60.0),))
    assert limiter.check_order("AAPL") is None
    clock.advance_ns(500 * MS)
    assert limiter.check_order("MSFT") is not None  # account short: MSFT keeps its token

    clock.advance_ns(500 * MS)

    assert limiter.check_order("MSFT") is None


def test_cancels_have_their_own_budget() -> None:
    limiter, _ = _limiter(windows=((3, 1.0),), cancel=((5, 1.0),))
    while limiter.check_order("AAPL") is None:
        pass

    cancels = [limiter.check_cancel() for _ in range(6)]

    assert cancels[:5] == [None] * 5
    assert cancels[5] == f"{RATE_LIMITED}: cancel limit 5 per 1 s exceeded; retry after 0.200 s"


def test_cancels_do_not_consume_order_budget() -> None:
    limiter, _ = _limiter(windows=((3, 1.0),))
    for _ in range(50):
        assert limiter.check_cancel() is None

    assert [limiter.check_order("AAPL") for _ in range(3)] == [None] * 3


def test_stats_count_allowed_and_denied_per_scope() -> None:
    limiter, _ = _limiter(windows=((3, 1.0),), per_symbol=((1, 1.0),), cancel=((1, 1.0),))
    limiter.check_order("A")
    limiter.check_order("A")  # symbol denial
    limiter.check_order("B")
    limiter.check_order("C")
    limiter.check_order("D")  # account denial
    limiter.check_cancel()
    limiter.check_cancel()

    stats = limiter.stats()

    assert stats.n_orders_allowed == 3
    assert stats.n_orders_denied_symbol == 1
    assert stats.n_orders_denied_account == 1
    assert stats.n_orders_denied == 2
    assert (stats.n_cancels_allowed, stats.n_cancels_denied) == (1, 1)


# --- Config ------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = RateLimitConfig()

    assert config.windows == (RateWindow(limit=100, per_s=1.0),)
    assert config.per_symbol == ()
    assert config.cancel_windows == (RateWindow(limit=1000, per_s=1.0),)


def test_config_parses_plain_dicts_as_from_toml() -> None:
    config = RateLimitConfig.model_validate(
        {"windows": [{"limit": 100, "per_s": 1}, {"limit": 1000, "per_s": 60}]}
    )

    assert [w.describe() for w in config.windows] == ["100 per 1 s", "1000 per 60 s"]


def test_config_is_frozen_and_rejects_unknown_keys() -> None:
    config = RateLimitConfig()

    with pytest.raises(ValidationError):
        config.windows = ()
    with pytest.raises(ValidationError, match="per_second"):
        RateWindow(limit=1, per_second=1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": 0, "per_s": 1.0}, r"limit must be >= 1 event per window, was 0; e\.g\."),
        ({"limit": 1, "per_s": 0.0}, r"per_s must be a finite number of seconds > 0, was 0\.0"),
        ({"limit": 1, "per_s": float("inf")}, r"per_s .* was inf"),
    ],
)
def test_window_validation_names_field_value_and_fix(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        RateWindow.model_validate(kwargs)


@pytest.mark.parametrize("field", ["windows", "cancel_windows"])
def test_required_windows_cannot_be_empty(field: str) -> None:
    with pytest.raises(ValidationError, match=rf"{field} must hold at least one window, was empty"):
        RateLimitConfig(**{field: ()})


def test_duplicate_window_lengths_are_rejected() -> None:
    one_s = (RateWindow(limit=100, per_s=1.0), RateWindow(limit=50, per_s=1.0))

    with pytest.raises(ValidationError, match=r"per_symbol has two windows per 1 s \(limits 100"):
        RateLimitConfig(per_symbol=one_s)


# --- Threads -----------------------------------------------------------------------------


def _race(n_threads: int, attempts: int, acquire: Callable[[], object]) -> int:
    barrier = threading.Barrier(n_threads)
    wins = [0] * n_threads

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(attempts):
            wins[i] += bool(acquire())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(wins)


@pytest.fixture
def tight_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force thread switches inside the critical sections
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("tight_switching")
def test_concurrent_acquires_grant_exactly_the_tokens_held() -> None:
    # On the 3.11 GIL the check-and-debit has no switch point; the lock matters without it.
    for k in range(1, 51):
        bucket = TokenBucket(1.0, k, TestClock())  # frozen clock: no refill during the race

        assert _race(32, 4, bucket.try_acquire) == k


@pytest.mark.usefixtures("tight_switching")
def test_concurrent_orders_grant_exactly_the_account_budget() -> None:
    # Budgets big enough for the threads to overlap: without the limiter's lock this test
    # fails on CPython 3.11 (the check-then-debit loop has thread-switch points).
    for k in range(100, 1100, 20):
        limiter, _ = _limiter(windows=((k, 1.0), (10 * k, 60.0)), per_symbol=((k, 1.0),))

        def order(lim: OrderRateLimiter = limiter) -> bool:
            return lim.check_order("AAPL") is None

        assert _race(32, k // 16 + 4, order) == k
        assert limiter.stats().n_orders_allowed == k


# --- Property ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    rate_per_s=st.sampled_from([0.5, 1.0, 3.0, 100.0, 1234.5]),
    burst=st.integers(min_value=1, max_value=20),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2 * S), st.integers(1, 20)),
        min_size=1,
        max_size=60,
    ),
)
def test_grants_never_exceed_burst_plus_rate_times_interval(
    rate_per_s: float, burst: int, steps: list[tuple[int, int]]
) -> None:
    clock = TestClock()
    bucket = TokenBucket(rate_per_s, burst, clock)
    grants: list[tuple[int, int]] = []
    for advance_ns, n in steps:
        clock.advance_ns(advance_ns)
        if n <= burst and bucket.try_acquire(n):
            grants.append((clock.now_ns(), n))

    rate = Fraction(rate_per_s)
    for i, (start_ns, _) in enumerate(grants):
        total = 0
        for end_ns, n in grants[i:]:
            total += n
            assert total <= burst + rate * Fraction(end_ns - start_ns, S)
