"""Degraded mode: when the process is overloaded, only exposure-reducing orders should pass.

Signals judged at each ``DegradedModeMonitor.sample()``: ``"cpu"``, process CPU time (user +
system) over the last ``cpu_window_s`` as a % of ONE core (two busy cores read 200 %), judged
once a full window of readings exists; ``"memory_limit"``, the memory the process's
tightest limit counts, as a % of that limit (``RLIMIT_AS``: address space, ``RLIMIT_DATA``,
cgroup ``memory.max``: ``hardening/memory_limit.py``; on by default at 85 %, not judged when
nothing limits the process), so that degraded mode comes before a ``MemoryError`` or the OOM
killer; ``"memory"``, resident set size in MiB against a number of your own (opt-in via
``memory_enter_mb``); ``"latency"``, a nearest-rank percentile (default p99, 100 = max) of
the last ``latency_window`` decisions. Cleanup actions run once each time a memory signal
becomes a reason.

A signal becomes a reason when it reaches its enter level (``>=``) and stops being one only
when it is below its exit level (``<``) AND ``min_dwell_s`` has passed since it became one:
hysteresis in level and time, so a load between the two levels never flaps. The monitor is
degraded while any reason, automatic or forced by an operator, is active; entry and exit are
immutable ``DegradedTransition`` records handed to listeners outside the lock. The monitor
blocks nothing itself: the engine wiring's listener moves the risk engine to
``TradingState.REDUCING`` on entry and back to ``ACTIVE`` on exit.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ultrathink.core.clock import Clock
from ultrathink.hardening.memory_limit import MemoryLimits, MemoryUse
from ultrathink.hardening.process_sampler import OsProcessSampler, ProcessSampler

#: Stable names of the automatic reasons.
REASON_CPU = "cpu"
REASON_MEMORY = "memory"
REASON_MEMORY_LIMIT = "memory_limit"
_MEMORY_REASONS = frozenset({REASON_MEMORY, REASON_MEMORY_LIMIT})
REASON_LATENCY = "latency"
#: How many transitions ``DegradedModeMonitor.transitions`` keeps.
MAX_KEPT_TRANSITIONS = 1000
#: ``memory_exit_mb`` defaults to this fraction of ``memory_enter_mb``.
DEFAULT_MEMORY_EXIT_FRACTION = 0.9
_CPU_BUCKETS = 64  # readings kept per CPU window at most: memory O(64), not O(sample rate)
_NS = 1_000_000_000
_MIB = 1 << 20


class DegradedTransition(NamedTuple):
    """Degraded mode entered or left: when (UTC ns), reasons (on exit: those cleared), why."""

    ts_ns: int
    entered: bool
    reasons: tuple[str, ...]
    detail: str


class DegradedReadings(NamedTuple):
    """Signals judged at the last ``sample()`` (None: not yet) and monotonic ns of entry."""

    cpu_pct: float | None
    rss_mb: float | None
    latency_ms: float | None
    degraded_since_ns: int | None
    memory_limit_pct: float | None = None  # of the tightest limit (None: no limit)
    memory_limit: str | None = None  # that limit and its use, e.g. "RLIMIT_AS (VmSize …)"


class DegradedConfig(BaseModel):
    """Thresholds of degraded mode; each exit level must be below its enter level."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    cpu_enter_pct: float | None = Field(
        default=90.0, gt=0, description="enter at CPU >= this (1 core); None: not watched"
    )
    cpu_exit_pct: float = Field(default=70.0, ge=0, description="CPU must fall below this")
    cpu_window_s: float = Field(default=10.0, gt=0, description="CPU averaged over this window")
    memory_enter_mb: float | None = Field(default=None, gt=0, description="None: not watched")
    memory_exit_mb: float | None = Field(default=None, gt=0, description="None: 0.9 x enter")
    memory_limit_enter_pct: float | None = Field(
        default=85.0, gt=0, lt=100, description="enter at this % of the tightest memory "
        "limit (RLIMIT_AS, RLIMIT_DATA, cgroup memory.max); None: not watched",
    )  # fmt: skip
    memory_limit_exit_pct: float | None = Field(
        default=None, gt=0, lt=100, description="None: enter - 10 points"
    )
    latency_enter_ms: float = Field(default=10.0, gt=0, description="enter at latency >= this")
    latency_exit_ms: float = Field(default=5.0, ge=0, description="latency must fall below this")
    latency_window: int = Field(default=100, ge=1, description="recent decisions judged")
    latency_percentile: float = Field(default=99.0, gt=0, le=100, description="100 = max")
    latency_min_samples: int = Field(default=10, ge=1, description="needed to judge latency")
    min_dwell_s: float = Field(default=5.0, ge=0, description="a reason lasts at least this")

    @model_validator(mode="after")
    def _exits_below_enters(self) -> DegradedConfig:
        if self.memory_limit_exit_pct is not None and self.memory_limit_enter_pct is None:
            raise ValueError(
                "memory_limit_exit_pct needs memory_limit_enter_pct; set both, or neither"
            )
        if self.memory_exit_mb is not None and self.memory_enter_mb is None:
            raise ValueError(
                f"memory_exit_mb needs memory_enter_mb, was {self.memory_exit_mb} with "
                "memory_enter_mb=None; set memory_enter_mb too, or drop memory_exit_mb"
            )
        for enter_name, exit_name in _PAIRS:
            enter, exit_ = getattr(self, enter_name), getattr(self, exit_name)
            if enter is not None and exit_ is not None and exit_ >= enter:
                raise ValueError(
                    f"{exit_name} must be < {enter_name} ({enter}), was {exit_}; an exit level "
                    f"at or above the enter level gives no hysteresis — lower {exit_name}"
                )
        if self.latency_min_samples > self.latency_window:
            raise ValueError(
                f"latency_min_samples must be <= latency_window ({self.latency_window}), was "
                f"{self.latency_min_samples}; latency would never be judged — lower it"
            )
        return self


_PAIRS = (
    ("cpu_enter_pct", "cpu_exit_pct"),
    ("memory_enter_mb", "memory_exit_mb"),
    ("latency_enter_ms", "latency_exit_ms"),
    ("memory_limit_enter_pct", "memory_limit_exit_pct"),
)


class _Threshold(NamedTuple):
    reason: str
    slot: int  # of the reading in (cpu_pct, rss_mb, latency_ms, memory_limit_pct)
    enter: float
    exit: float
    unit: str
    enter_name: str
    exit_name: str


def _thresholds(cfg: DegradedConfig) -> tuple[_Threshold, ...]:
    # The signals watched, in the order their reasons are judged and named in details.
    cpu, memory, latency, limit = _PAIRS
    found = [
        _Threshold(REASON_LATENCY, 2, cfg.latency_enter_ms, cfg.latency_exit_ms, " ms", *latency),
    ]
    if cfg.cpu_enter_pct is not None:  # off for unpaced runs: they are meant to use a core
        found.insert(0, _Threshold(REASON_CPU, 0, cfg.cpu_enter_pct, cfg.cpu_exit_pct, " %", *cpu))
    if cfg.memory_enter_mb is not None:
        enter_mb = cfg.memory_enter_mb
        exit_mb = cfg.memory_exit_mb or enter_mb * DEFAULT_MEMORY_EXIT_FRACTION
        found.append(_Threshold(REASON_MEMORY, 1, enter_mb, exit_mb, " MiB", *memory))
    if cfg.memory_limit_enter_pct is not None:
        enter_pct = cfg.memory_limit_enter_pct
        exit_pct = cfg.memory_limit_exit_pct or max(enter_pct - 10.0, enter_pct / 2)
        found.append(_Threshold(REASON_MEMORY_LIMIT, 3, enter_pct, exit_pct, " %", *limit))
    return tuple(found)


class DegradedModeMonitor:
    """Decide when the process is degraded, from CPU, memory, latency and operator orders.

    Parameters
    ----------
    config : DegradedConfig
        Thresholds.
    clock : Clock
        ``monotonic_ns`` measures windows and dwell; ``now_ns`` stamps transitions.
    sampler : ProcessSampler, optional
        Source of CPU time and RSS; ``OsProcessSampler()`` when None.
    limits : MemoryLimits, optional
        The process's memory limits; ``MemoryLimits()`` (this process's) when None and
        ``memory_limit_enter_pct`` is set.
    """

    def __init__(
        self,
        config: DegradedConfig,
        clock: Clock,
        sampler: ProcessSampler | None = None,
        limits: MemoryLimits | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._sampler: ProcessSampler = sampler if sampler is not None else OsProcessSampler()
        if limits is None and config.memory_limit_enter_pct is not None:
            limits = MemoryLimits()
        self._limits = limits
        self._limit_use: MemoryUse | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[DegradedTransition], None]] = []
        self._cleanups: list[Callable[[], None]] = []
        self._transitions: deque[DegradedTransition] = deque(maxlen=MAX_KEPT_TRANSITIONS)
        self._active: dict[str, int] = {}  # automatic reason -> monotonic ns it became one
        self._forced: dict[str, str] = {}  # operator reason -> operator's detail
        self._entered_ns: int | None = None
        self._window_ns = int(config.cpu_window_s * _NS)
        self._min_gap_ns = max(1, self._window_ns // _CPU_BUCKETS)
        self._dwell_ns = int(config.min_dwell_s * _NS)
        self._thresholds = _thresholds(config)
        self._cpu_readings: deque[tuple[int, float]] = deque()  # (monotonic ns, cpu s)
        # A bounded deque is a ring buffer: record_latency_ns is O(1).
        self._latencies_ns: deque[int] = deque(maxlen=config.latency_window)
        self._cpu_pct: float | None = None
        self._rss_mb: float | None = None
        self._latency_ms: float | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def is_degraded(self) -> bool:
        """True while any reason (automatic or forced) is active."""
        with self._lock:
            return bool(self._active or self._forced)

    @property
    def reasons(self) -> frozenset[str]:
        """The active reasons: ``"cpu"``, ``"memory"``, ``"latency"`` and forced ones."""
        with self._lock:
            return self._reasons_locked()

    @property
    def readings(self) -> DegradedReadings:
        """The signals as judged at the last ``sample()``, and when degraded mode began."""
        with self._lock:
            use = self._limit_use
            return DegradedReadings(
                self._cpu_pct, self._rss_mb, self._latency_ms, self._entered_ns,
                None if use is None else round(use.pct, 2),
                None if use is None else use.describe(),
            )  # fmt: skip

    @property
    def transitions(self) -> tuple[DegradedTransition, ...]:
        """Return the last ``MAX_KEPT_TRANSITIONS`` transitions, oldest first."""
        with self._lock:
            return tuple(self._transitions)

    def on_change(self, callback: Callable[[DegradedTransition], None]) -> None:
        """Register ``callback`` to receive every future entry into and exit from degraded mode.

        Callbacks run on the thread that caused the change, after the lock is released. Every
        callback and cleanup runs even if one raises; the first exception is then re-raised.
        """
        with self._lock:
            self._listeners.append(callback)

    def add_cleanup(self, callback: Callable[[], None]) -> None:
        """Register ``callback`` (drop caches, trim history): run once per memory entry
        (either memory signal becoming a reason)."""
        with self._lock:
            self._cleanups.append(callback)

    def record_latency_ns(self, latency_ns: int) -> None:
        """Record one decision's latency in ns (O(1)); it is judged at the next ``sample()``."""
        with self._lock:
            self._latencies_ns.append(latency_ns)

    def sample(self) -> bool:
        """Judge CPU, RSS and latency now (call it periodically); return ``is_degraded``."""
        cpu_s = self._sampler.cpu_seconds()
        rss_mb = self._sampler.rss_mb()
        limit_use = self._limits.tightest() if self._limits is not None else None
        now = self._clock.monotonic_ns()
        with self._lock:
            before = self._reasons_locked()
            self._cpu_pct = self._update_cpu(now, cpu_s)
            self._rss_mb = rss_mb
            self._limit_use = limit_use
            self._latency_ms = self._latency_locked()
            detail = self._judge(now)
            record, cleanup = self._settle(before, detail, now)
            degraded = bool(self._active or self._forced)
        self._emit(record, cleanup)
        return degraded

    def force(self, reason: str = "operator", detail: str = "") -> None:
        """Add ``reason`` by operator order until ``clear(reason)``; ``"memory"`` runs cleanups."""
        if not reason:
            raise ValueError("force: reason must be a non-empty string, was ''")
        now = self._clock.monotonic_ns()
        with self._lock:
            before = self._reasons_locked()
            self._forced[reason] = detail
            text = f"forced by operator: {reason}" + (f" ({detail})" if detail else "")
            record, cleanup = self._settle(before, text, now)
        self._emit(record, cleanup)

    def clear(self, reason: str | None = None, detail: str = "") -> None:
        """Drop ``reason`` (forced or automatic; None: all) now, ignoring dwell and levels.

        A signal still at its enter level re-enters at the next ``sample()``. Clearing
        ``"latency"`` (or all) also empties the latency window, so only new decisions count.
        """
        now = self._clock.monotonic_ns()
        with self._lock:
            before = self._reasons_locked()
            targets = before if reason is None else before & {reason}
            for name in targets:
                self._forced.pop(name, None)
                self._active.pop(name, None)
            if reason in (None, REASON_LATENCY):
                self._latencies_ns.clear()
            names = ", ".join(sorted(targets)) or "nothing"
            text = f"cleared by operator: {names}" + (f" ({detail})" if detail else "")
            record, cleanup = self._settle(before, text, now)
        self._emit(record, cleanup)

    # -- helpers: *_locked and the helpers they call run under self._lock -----------------

    def _reasons_locked(self) -> frozenset[str]:
        return frozenset(self._active).union(self._forced)

    def _update_cpu(self, now: int, cpu_s: float) -> float | None:
        readings = self._cpu_readings
        if readings and now < readings[-1][0]:
            return self._cpu_pct  # a concurrent sample() got in first: keep its verdict
        start = now - self._window_ns
        while len(readings) >= 2 and readings[1][0] <= start:
            readings.popleft()
        pct = None
        if readings and readings[0][0] <= start:  # the readings span a full window
            then_ns, then_cpu_s = readings[0]
            pct = 100.0 * (cpu_s - then_cpu_s) * _NS / (now - then_ns)
        if not readings or now - readings[-1][0] >= self._min_gap_ns:
            readings.append((now, cpu_s))
        return pct

    def _latency_locked(self) -> float | None:
        data = sorted(self._latencies_ns)
        n = len(data)
        if n < self._config.latency_min_samples:
            return None
        rank = max(1, math.ceil(self._config.latency_percentile * n / 100 - 1e-9))
        return data[rank - 1] / 1e6

    def _judge(self, now: int) -> str:
        # Move automatic reasons in or out; return what entered, else what left.
        entered: list[str] = []
        left: list[str] = []
        use = self._limit_use
        values = (self._cpu_pct, self._rss_mb, self._latency_ms, use and use.pct)
        for sig in self._thresholds:
            value = values[sig.slot]
            if value is None:
                continue
            since = self._active.get(sig.reason)
            shown = f"{sig.reason} {value:.2f}{sig.unit}"
            if sig.reason == REASON_MEMORY_LIMIT and use is not None:
                shown += f" of {use.describe()}"
            if since is None and value >= sig.enter:
                self._active[sig.reason] = now
                entered.append(f"{shown} >= {sig.enter_name}={sig.enter}")
            elif since is not None and value < sig.exit and now - since >= self._dwell_ns:
                del self._active[sig.reason]
                dwell = f"min_dwell_s={self._config.min_dwell_s}"
                left.append(f"{shown} < {sig.exit_name}={sig.exit} after {dwell}")
        return "; ".join(entered or left)

    def _settle(
        self, before: frozenset[str], detail: str, now: int
    ) -> tuple[DegradedTransition | None, bool]:
        # Record a transition if the mode changed; say whether memory just became a reason.
        after = self._reasons_locked()
        cleanup = bool((after - before) & _MEMORY_REASONS)
        if bool(before) == bool(after):
            return None, cleanup
        entered = bool(after)
        reasons = tuple(sorted(after if entered else before))
        record = DegradedTransition(self._clock.now_ns(), entered, reasons, detail)
        self._entered_ns = now if entered else None
        self._transitions.append(record)
        return record, cleanup

    def _emit(self, record: DegradedTransition | None, cleanup: bool) -> None:
        # Outside the lock: listeners first (they stop new exposure), then cleanups.
        if record is None and not cleanup:
            return
        calls: list[Callable[[], object]] = []
        with self._lock:
            if record is not None:
                calls.extend(functools.partial(listener, record) for listener in self._listeners)
            if cleanup:
                calls.extend(self._cleanups)
        errors: list[Exception] = []
        for call in calls:
            try:
                call()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
