"""Circuit breaker: stop calling a dependency that keeps failing, probe it, then resume.

States: CLOSED (calls pass; failures are counted in a sliding time window), OPEN (calls are
refused until ``recovery_timeout_s`` has elapsed), HALF_OPEN (up to ``half_open_max_probes``
calls are admitted; ``half_open_successes_to_close`` successes close it, one failure re-opens
it). Time comes from the injected ``Clock`` (``monotonic_ns`` for windows and timers,
``now_ns`` for transition timestamps). Every transition is an immutable ``BreakerTransition``
handed to listeners after the internal lock is released, so a listener may read the breaker.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ultrathink.core.clock import Clock
from ultrathink.errors import UltrathinkError

T = TypeVar("T")

#: How many transitions ``CircuitBreaker.transitions`` keeps.
MAX_KEPT_TRANSITIONS = 1000
_RATE_BUCKETS = 64  # the rate window's time buckets: memory is O(buckets), not O(calls)
_NS = 1_000_000_000


class BreakerState(StrEnum):
    """Circuit breaker states; values are stable strings (persisted in audit rows)."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class BreakerTransition(NamedTuple):
    """One state change of one breaker: when (UTC ns), which, from, to and why."""

    ts_ns: int
    name: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str


class CircuitOpenError(UltrathinkError):
    """A call was refused: the breaker ``name`` is OPEN or out of HALF_OPEN probes.

    ``retry_in_s`` is the wait until it probes again; None when forced open or probing.
    """

    def __init__(self, name: str, state: BreakerState, retry_in_s: float | None) -> None:
        self.name = name
        self.state = state
        self.retry_in_s = retry_in_s
        if retry_in_s is not None:
            when = f"it will probe again in {retry_in_s:.3f} s"
        elif state is _HALF_OPEN:
            when = "all probes are in flight; it will decide when they report"
        else:
            when = "it was forced open and stays open until force_closed() is called"
        super().__init__(
            f"circuit breaker {name!r} is {state.value}: call refused; {when} "
            "(fix the failing dependency, pass a fallback, or wait)"
        )


class BreakerConfig(BaseModel):
    """Settings of one circuit breaker; each field's ``description`` says what it does.

    Both trip rules apply: set ``failure_threshold`` high to trip on the rate alone. Calls for
    the rate are counted in ``window_s / 64`` time buckets; the count rule is exact.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(min_length=1, description="used in transitions, errors and metrics")
    failure_threshold: int = Field(default=3, ge=1, description="failures in window_s that trip")
    failure_rate_threshold: float | None = Field(
        default=None, gt=0, le=1, description="trip at failures/calls >= this (needs min_calls)"
    )
    min_calls: int = Field(default=5, ge=1, description="calls in window_s before rate counts")
    window_s: float = Field(default=60.0, gt=0, description="sliding window, clock seconds")
    slow_call_s: float | None = Field(
        default=None, gt=0, description="a success slower than this counts as a failure"
    )
    recovery_timeout_s: float = Field(
        default=30.0, gt=0, description="OPEN -> HALF_OPEN delay; also the wait for a probe"
    )
    half_open_max_probes: int = Field(default=1, ge=1, description="calls admitted in HALF_OPEN")
    half_open_successes_to_close: int = Field(
        default=1, ge=1, description="probe successes that close it (<= half_open_max_probes)"
    )
    stale_after_s: float | None = Field(
        default=None, gt=0, description="trip when record_heartbeat() is silent this long"
    )

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError(f"name must be printable text (no control characters), was {value!r}")
        return value

    @model_validator(mode="after")
    def _closable(self) -> BreakerConfig:
        if self.half_open_successes_to_close > self.half_open_max_probes:
            raise ValueError(
                f"breaker {self.name!r}: half_open_successes_to_close must be <= "
                f"half_open_max_probes ({self.half_open_max_probes}), was "
                f"{self.half_open_successes_to_close}; it could never close — raise "
                "half_open_max_probes or lower half_open_successes_to_close"
            )
        return self


class CircuitBreaker:
    """A thread-safe circuit breaker over ``config``, reading time from ``clock``.

    Results reported while OPEN (late outcomes of calls admitted before the trip) are ignored.
    A ``force_open`` breaker never probes by itself; ``force_closed`` resumes normal operation.
    """

    def __init__(self, config: BreakerConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Callable[[BreakerTransition], None]] = []
        self._transitions: deque[BreakerTransition] = deque(maxlen=MAX_KEPT_TRANSITIONS)
        self._pending: list[BreakerTransition] = []
        self._window_ns = int(config.window_s * _NS)
        self._recovery_ns = int(config.recovery_timeout_s * _NS)
        self._stale_ns = None if config.stale_after_s is None else int(config.stale_after_s * _NS)
        self._bucket_ns = max(1, self._window_ns // _RATE_BUCKETS)
        # Fast paths skip the clock entirely when no time-based rule needs it.
        self._plain_allow = self._stale_ns is None
        self._plain_success = config.slow_call_s is None and config.failure_rate_threshold is None
        self._state = _CLOSED
        self._forced = False
        self._entered_ns = clock.monotonic_ns()
        self._heartbeat_ns = self._entered_ns
        self._last_probe_ns = self._entered_ns
        self._probes_left = 0
        self._probe_successes = 0
        # The last `failure_threshold` failure times: the count rule is exact in O(threshold).
        self._failures: deque[int] = deque(maxlen=config.failure_threshold)
        self._buckets: deque[list[int]] = deque()  # [start_ns, n_calls, n_failed]
        self._n_calls = 0
        self._n_failed = 0

    # -- public API -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._config.name

    @property
    def state(self) -> BreakerState:
        """Return the current state, first applying any timer that has elapsed."""
        return self._run(self._state_locked)

    @property
    def transitions(self) -> tuple[BreakerTransition, ...]:
        """Return the last ``MAX_KEPT_TRANSITIONS`` transitions, oldest first."""
        with self._lock:
            return tuple(self._transitions)

    def on_transition(self, callback: Callable[[BreakerTransition], None]) -> None:
        """Register ``callback`` to receive every future transition.

        Callbacks run on the thread that caused the transition, after the lock is released;
        an exception from a callback propagates to that caller (the state change stands).
        """
        with self._lock:
            self._listeners.append(callback)

    def allow(self) -> bool:
        """Return True if a call may proceed now; in HALF_OPEN each True consumes a probe."""
        with self._lock:
            if self._state is _CLOSED and self._plain_allow:
                return True
            allowed = self._allow_locked()
            pending = self._take_pending()
        self._emit(pending)
        return allowed

    def record_success(self, duration_s: float = 0.0) -> None:
        """Record a successful call that took ``duration_s`` seconds (slow ones fail)."""
        with self._lock:
            if self._state is _CLOSED and self._plain_success:
                return
            self._success_locked(duration_s)
            pending = self._take_pending()
        self._emit(pending)

    def record_failure(self, reason: str) -> None:
        """Record a failed call; ``reason`` ends up in the transition it may cause."""
        self._run(self._failure_locked, reason)

    def record_heartbeat(self) -> None:
        """Record that the guarded feed is alive (resets the staleness timer)."""
        with self._lock:
            self._heartbeat_ns = self._clock.monotonic_ns()

    def check_staleness(self) -> bool:
        """Trip the breaker if no heartbeat came for ``stale_after_s``; return True if stale."""
        return self._run(self._staleness_locked)

    def force_open(self, reason: str) -> None:
        """Open the breaker by operator order; it stays open until ``force_closed``."""
        self._run(self._force_locked, _OPEN, f"forced open: {reason}")

    def force_closed(self, reason: str) -> None:
        """Close the breaker by operator order, clearing its window and staleness timer."""
        self._run(self._force_locked, _CLOSED, f"forced closed: {reason}")

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        fallback: Callable[[], T] | None = None,
        **kwargs: Any,
    ) -> T:
        """Call ``fn(*args, **kwargs)`` through the breaker, timed on the clock.

        ``fallback()`` (no arguments; the keyword is never passed to ``fn``) is returned when
        the call is refused or ``fn`` raises. Without it a refusal raises
        ``CircuitOpenError`` and an exception of ``fn`` is recorded as a failure and re-raised.
        """
        if not self.allow():
            if fallback is not None:
                return fallback()
            raise self._open_error()
        start_ns = self._clock.monotonic_ns()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.record_failure(f"{type(exc).__name__}: {exc}")
            if fallback is not None:
                return fallback()
            raise
        self.record_success((self._clock.monotonic_ns() - start_ns) / _NS)
        return result

    # -- helpers: *_locked run under self._lock; _run and _emit take it / run outside it ---

    def _state_locked(self) -> BreakerState:
        self._refresh(self._clock.monotonic_ns())
        return self._state

    def _staleness_locked(self) -> bool:
        now = self._clock.monotonic_ns()
        self._refresh(now)
        is_stale = self._is_stale(now)
        if is_stale and self._state is not _OPEN:
            self._trip_stale(now)
        return is_stale

    def _force_locked(self, to_state: BreakerState, reason: str) -> None:
        now = self._clock.monotonic_ns()
        self._forced = to_state is _OPEN
        if to_state is _CLOSED:
            self._heartbeat_ns = now  # the operator vouches for the feed: restart the timer
        self._move(to_state, reason, now)

    def _allow_locked(self) -> bool:
        now = self._clock.monotonic_ns()
        self._refresh(now)
        if self._state is not _OPEN and self._is_stale(now):
            self._trip_stale(now)
        if self._state is _CLOSED:
            return True
        if self._state is _HALF_OPEN and self._probes_left > 0:
            self._probes_left -= 1
            self._last_probe_ns = now
            return True
        return False

    def _success_locked(self, duration_s: float) -> None:
        slow_s = self._config.slow_call_s
        if slow_s is not None and duration_s > slow_s:
            self._failure_locked(f"slow call: {duration_s:.6f} s > slow_call_s={slow_s}")
        elif self._state is _CLOSED:
            self._judge_rate(self._clock.monotonic_ns(), 0, "success")
        elif self._state is _HALF_OPEN:
            self._probe_successes += 1
            need = self._config.half_open_successes_to_close
            if self._probe_successes >= need:
                reason = f"{need} probe success(es) in HALF_OPEN"
                self._move(_CLOSED, reason, self._clock.monotonic_ns())

    def _failure_locked(self, reason: str) -> None:
        now = self._clock.monotonic_ns()
        if self._state is _HALF_OPEN:
            self._move(_OPEN, f"probe failed: {reason}", now)
        elif self._state is _CLOSED:
            failures = self._failures
            failures.append(now)
            if len(failures) == failures.maxlen and failures[0] > now - self._window_ns:
                cfg = self._config
                rule = f"{cfg.failure_threshold} failures within window_s={cfg.window_s}"
                self._move(_OPEN, f"{rule}; last: {reason}", now)
            else:
                self._judge_rate(now, 1, reason)

    def _judge_rate(self, now: int, failed: int, reason: str) -> None:
        cfg = self._config
        if cfg.failure_rate_threshold is None:
            return
        buckets, bucket_ns = self._buckets, self._bucket_ns
        start = now - now % bucket_ns
        if not buckets or buckets[-1][0] != start:
            buckets.append([start, 0, 0])
        buckets[-1][1] += 1
        buckets[-1][2] += failed
        self._n_calls += 1
        self._n_failed += failed
        cutoff = now - self._window_ns
        while buckets[0][0] + bucket_ns - 1 <= cutoff:  # the bucket lies wholly outside
            _, n_calls, n_failed = buckets.popleft()
            self._n_calls -= n_calls
            self._n_failed -= n_failed
        n_calls, n_failed = self._n_calls, self._n_failed
        if n_calls >= cfg.min_calls and n_failed >= cfg.failure_rate_threshold * n_calls:
            rule = f"failure_rate_threshold={cfg.failure_rate_threshold}"
            detail = f"failure rate {n_failed / n_calls:.3f} ({n_failed}/{n_calls} calls)"
            self._move(_OPEN, f"{detail} >= {rule} in window_s={cfg.window_s}; last: {reason}", now)

    def _refresh(self, now: int) -> None:
        # Timers are evaluated lazily, whenever the breaker is consulted.
        if self._state is _OPEN:
            if not self._forced and now - self._entered_ns >= self._recovery_ns:
                limit = self._config.recovery_timeout_s
                self._move(_HALF_OPEN, f"recovery_timeout_s={limit} elapsed", now)
        elif (
            self._state is _HALF_OPEN
            and self._probes_left == 0
            and now - self._last_probe_ns >= self._recovery_ns
        ):
            limit = self._config.recovery_timeout_s
            self._move(_OPEN, f"probe outcome not reported within recovery_timeout_s={limit}", now)

    def _is_stale(self, now: int) -> bool:
        return self._stale_ns is not None and now - self._heartbeat_ns >= self._stale_ns

    def _trip_stale(self, now: int) -> None:
        silent_s = (now - self._heartbeat_ns) / _NS
        limit = self._config.stale_after_s
        self._move(_OPEN, f"stale: no heartbeat for {silent_s:.3f} s >= stale_after_s={limit}", now)

    def _move(self, to_state: BreakerState, reason: str, now: int) -> None:
        cfg = self._config
        record = BreakerTransition(self._clock.now_ns(), cfg.name, self._state, to_state, reason)
        self._state = to_state
        self._entered_ns = now
        self._transitions.append(record)
        self._pending.append(record)
        self._probes_left = cfg.half_open_max_probes if to_state is _HALF_OPEN else 0
        self._probe_successes = 0
        self._last_probe_ns = now
        if to_state is not _HALF_OPEN:
            self._failures.clear()
            self._buckets.clear()
            self._n_calls = self._n_failed = 0

    def _take_pending(self) -> list[BreakerTransition] | None:
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        return pending

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # Run fn under the lock, then hand its transitions to listeners outside it.
        with self._lock:
            result = fn(*args)
            pending = self._take_pending()
        self._emit(pending)
        return result

    def _emit(self, pending: list[BreakerTransition] | None) -> None:
        if not pending:
            return
        listeners = tuple(self._listeners)
        for record in pending:
            for listener in listeners:
                listener(record)

    def _open_error(self) -> CircuitOpenError:
        with self._lock:
            state = self._state
            retry_in_s: float | None = None
            if state is _OPEN and not self._forced:
                wait_ns = self._entered_ns + self._recovery_ns - self._clock.monotonic_ns()
                retry_in_s = max(0.0, wait_ns / _NS)
        return CircuitOpenError(self._config.name, state, retry_in_s)
