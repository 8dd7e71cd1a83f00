"""Order rate limiting: token buckets refilled lazily from an injected ``Clock``.

A ``TokenBucket`` holds up to ``burst`` tokens and refills continuously at ``rate_per_s``; the
refill is computed at each call from the clock (no timer threads), and a call never blocks or
queues: it answers yes or no. Token counts are exact integers in units of ``1/denominator``
of a token (the rate as an exact fraction), so ``100 per 1 s`` for ten seconds grants exactly
1,000 tokens, with no floating-point drift.

``OrderRateLimiter`` combines several windows (e.g. 100 per 1 s and 1,000 per 60 s) for the
account, per symbol and, separately, for cancels — so a kill switch cancelling everything is
never throttled by the order budget. A denial is a readable detail string whose stable reason
code is ``RATE_LIMITED`` (risk says no with a reason, not an exception).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from ultrathink.core.clock import Clock
from ultrathink.core.enums import DenyReason
from ultrathink.errors import ConfigError

#: Stable reason code of a rate-limit denial (to become ``DenyReason.RATE_LIMITED``).
RATE_LIMITED = DenyReason.RATE_LIMITED.value  # the stable reason code of a denial

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


class TokenBucket:
    """A thread-safe token bucket that never blocks.

    Parameters
    ----------
    rate_per_s : float or Fraction
        Tokens added per second, continuously; must be finite and > 0. A ``Fraction`` (e.g.
        ``Fraction(1000, 60)``) is used exactly.
    burst : int
        Capacity: the most tokens that can be taken at once; the bucket starts full.
    clock : Clock
        Time source; read through ``monotonic_ns`` at each call.

    Raises
    ------
    ConfigError
        If ``rate_per_s`` or ``burst`` is out of range.
    """

    __slots__ = ("_cap", "_clock", "_last_ns", "_lock", "_per_ns", "_unit", "_units", "burst")

    def __init__(self, rate_per_s: float | Fraction, burst: int, clock: Clock) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ConfigError(
                f"TokenBucket rate_per_s must be a finite number > 0, was {rate_per_s!r}; "
                "pass the tokens added per second, e.g. 100.0"
            )
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(
                f"TokenBucket burst must be an integer >= 1, was {burst!r}; "
                "pass the bucket capacity, e.g. 100"
            )
        per_ns = Fraction(rate_per_s) / _NS_PER_S
        self.burst = burst
        self._per_ns = per_ns.numerator  # units added per nanosecond
        self._unit = per_ns.denominator  # units per token
        self._cap = burst * self._unit
        self._units = self._cap
        self._clock = clock
        self._last_ns = clock.monotonic_ns()
        self._lock = threading.Lock()

    @property
    def rate_per_s(self) -> Fraction:
        """The exact refill rate in tokens per second."""
        return Fraction(self._per_ns * _NS_PER_S, self._unit)

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` tokens if they are all available now; never block.

        Parameters
        ----------
        n : int
            Tokens wanted, 1 <= n <= burst.

        Returns
        -------
        bool
            True when the tokens were taken, False (and nothing taken) otherwise.
        """
        need = self._need_units(n)
        with self._lock:
            self._refill(self._clock.monotonic_ns())
            if self._units < need:
                return False
            self._units -= need
            return True

    def available(self) -> float:
        """Return the tokens available now (fractional while refilling)."""
        with self._lock:
            self._refill(self._clock.monotonic_ns())
            return self._units / self._unit

    def wait_ns(self, n: int = 1) -> int:
        """Return the nanoseconds until ``n`` tokens are available (0 when they are now)."""
        need = self._need_units(n)
        with self._lock:
            self._refill(self._clock.monotonic_ns())
            return self._wait_units_ns(need)

    def _need_units(self, n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.burst:
            raise ValueError(
                f"token count n must be an integer in [1, burst={self.burst}], was {n!r}; "
                "a request larger than the burst could never be granted"
            )
        return n * self._unit

    def _refill(self, now_ns: int) -> None:
        # Callers hold the lock; a clock that steps back adds nothing and keeps the old mark.
        elapsed_ns = now_ns - self._last_ns
        if elapsed_ns > 0:
            units = self._units + elapsed_ns * self._per_ns
            self._units = units if units < self._cap else self._cap
            self._last_ns = now_ns

    def _wait_units_ns(self, need: int) -> int:
        deficit = need - self._units
        return 0 if deficit <= 0 else -(-deficit // self._per_ns)


class RateWindow(BaseModel):
    """At most ``limit`` events per ``per_s`` seconds (a bucket of ``limit`` tokens).

    Attributes
    ----------
    limit : int
        Events allowed per window; also the burst.
    per_s : float
        Window length in seconds; the refill rate is ``limit / per_s``.
    """

    # strict: no type coercion (true is not 1); inf/nan reach _check_per_s, which names them
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    limit: int
    per_s: float

    @field_validator("limit")
    @classmethod
    def _check_limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"limit must be >= 1 event per window, was {value}; e.g. limit=100")
        return value

    @field_validator("per_s")
    @classmethod
    def _check_per_s(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"per_s must be a finite number of seconds > 0, was {value}; e.g. 1.0")
        return value

    def describe(self) -> str:
        """Return e.g. ``"100 per 1 s"``."""
        return f"{self.limit} per {self.per_s:g} s"

    def bucket(self, clock: Clock) -> TokenBucket:
        """Return a full bucket with rate ``limit / per_s`` (exact) and burst ``limit``."""
        return TokenBucket(Fraction(self.limit) / Fraction(self.per_s), self.limit, clock)


def _check_windows(field: str, windows: tuple[RateWindow, ...]) -> tuple[RateWindow, ...]:
    seen: dict[float, int] = {}
    for window in windows:
        if window.per_s in seen:
            raise ValueError(
                f"{field} has two windows per {window.per_s:g} s (limits {seen[window.per_s]} "
                f"and {window.limit}); keep one window per length, e.g. the stricter one"
            )
        seen[window.per_s] = window.limit
    return windows


class RateLimitConfig(BaseModel):
    """Order and cancel rate limits.

    Attributes
    ----------
    windows : tuple of RateWindow
        Account-wide order windows; an order needs a token from every one. At least one.
    per_symbol : tuple of RateWindow
        Windows applied to each symbol separately (buckets created on first use); empty for
        none.
    cancel_windows : tuple of RateWindow
        A separate budget for cancels, so cancelling everything is never throttled by the
        order limits. At least one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    windows: tuple[RateWindow, ...] = (RateWindow(limit=100, per_s=1.0),)
    per_symbol: tuple[RateWindow, ...] = ()
    cancel_windows: tuple[RateWindow, ...] = (RateWindow(limit=1000, per_s=1.0),)

    @field_validator("windows", "per_symbol", "cancel_windows", mode="before")
    @classmethod
    def _array_as_tuple(cls, value: Any) -> Any:
        # TOML arrays and stored JSON configs arrive as lists; strict mode wants the tuple
        return tuple(value) if isinstance(value, list) else value

    @field_validator("windows", "cancel_windows")
    @classmethod
    def _check_required(
        cls, value: tuple[RateWindow, ...], info: ValidationInfo
    ) -> tuple[RateWindow, ...]:
        field = info.field_name or "windows"
        if not value:
            raise ValueError(
                f"{field} must hold at least one window, was empty; "
                "e.g. [{limit = 100, per_s = 1.0}]"
            )
        return _check_windows(field, value)

    @field_validator("per_symbol")
    @classmethod
    def _check_per_symbol(cls, value: tuple[RateWindow, ...]) -> tuple[RateWindow, ...]:
        return _check_windows("per_symbol", value)


@dataclass(frozen=True, slots=True)
class RateLimitStats:
    """Counters of an ``OrderRateLimiter`` since it was built, for metrics."""

    n_orders_allowed: int
    n_orders_denied_account: int
    n_orders_denied_symbol: int
    n_cancels_allowed: int
    n_cancels_denied: int

    @property
    def n_orders_denied(self) -> int:
        """Orders denied by any window."""
        return self.n_orders_denied_account + self.n_orders_denied_symbol


# (bucket, "account limit 100 per 1 s", is_account) — what a denial names and counts.
_Gate = tuple[TokenBucket, str, bool]


class OrderRateLimiter:
    """Rate limits for new orders (account and per symbol) and, separately, for cancels.

    Every window must have a token for a request to pass; then one token is taken from each
    (all or nothing, under one lock). Nothing blocks or queues.

    Parameters
    ----------
    config : RateLimitConfig
        The windows.
    clock : Clock
        Time source shared by all buckets.
    """

    def __init__(self, config: RateLimitConfig, clock: Clock) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._account = self._gates(config.windows, "account", clock)
        self._cancel = self._gates(config.cancel_windows, "cancel", clock)
        self._by_symbol: dict[str, tuple[_Gate, ...]] = {}
        self._n_allowed = self._n_denied_account = self._n_denied_symbol = 0
        self._n_cancels_allowed = self._n_cancels_denied = 0

    @staticmethod
    def _gates(windows: tuple[RateWindow, ...], scope: str, clock: Clock) -> tuple[_Gate, ...]:
        return tuple(
            (w.bucket(clock), f"{scope} limit {w.describe()}", scope == "account") for w in windows
        )

    def check_order(self, symbol: str) -> str | None:
        """Take an order token from every account and ``symbol`` window, or deny.

        Returns
        -------
        str or None
            None when allowed; otherwise a detail such as ``"RATE_LIMITED: account limit 100
            per 1 s exceeded; retry after 0.012 s"`` (nothing is debited).
        """
        with self._lock:
            gates = self._by_symbol.get(symbol)
            if gates is None:
                gates = self._symbol_gates(symbol)
            denied = _take_all(gates, self._clock.monotonic_ns())
            if denied is None:
                self._n_allowed += 1
                return None
            if denied[2]:
                self._n_denied_account += 1
            else:
                self._n_denied_symbol += 1
            return _detail(denied)

    def check_cancel(self) -> str | None:
        """Take a token from every cancel window, or deny; order windows are not touched.

        Returns
        -------
        str or None
            None when allowed; otherwise a ``RATE_LIMITED`` detail naming the cancel window.
        """
        with self._lock:
            denied = _take_all(self._cancel, self._clock.monotonic_ns())
            if denied is None:
                self._n_cancels_allowed += 1
                return None
            self._n_cancels_denied += 1
            return _detail(denied)

    def stats(self) -> RateLimitStats:
        """Return a snapshot of the allowed/denied counters."""
        with self._lock:
            return RateLimitStats(
                n_orders_allowed=self._n_allowed,
                n_orders_denied_account=self._n_denied_account,
                n_orders_denied_symbol=self._n_denied_symbol,
                n_cancels_allowed=self._n_cancels_allowed,
                n_cancels_denied=self._n_cancels_denied,
            )

    def headroom(self) -> dict[str, dict[str, float]]:
        """Tokens left now in each account and cancel window: ``{label: {"available",
        "limit"}}`` (per-symbol windows are left out: one per symbol traded)."""
        with self._lock:
            return {
                label: {"available": bucket.available(), "limit": float(bucket.burst)}
                for bucket, label, _ in self._account + self._cancel
            }

    def _symbol_gates(self, symbol: str) -> tuple[_Gate, ...]:
        # Account gates first so a denial names the account when both are short.
        own = self._gates(self.config.per_symbol, f"symbol {symbol}", self._clock)
        gates = self._account + own
        self._by_symbol[symbol] = gates
        return gates


def _take_all(gates: tuple[_Gate, ...], now_ns: int) -> _Gate | None:
    # Check every bucket first and debit only if all have a token (caller holds the lock).
    for gate in gates:
        bucket = gate[0]
        bucket._refill(now_ns)
        if bucket._units < bucket._unit:
            return gate
    for gate in gates:
        gate[0]._units -= gate[0]._unit
    return None


def _detail(gate: _Gate) -> str:
    bucket, label, _ = gate
    wait_ns = bucket._wait_units_ns(bucket._unit)
    wait_s = math.ceil(wait_ns / _NS_PER_MS) / 1000
    return f"{RATE_LIMITED}: {label} exceeded; retry after {wait_s:.3f} s"
