"""Engine snapshots: an immutable picture of a running session, published at a bounded rate.

The kernel thread builds an ``EngineSnapshot`` at most every ``interval_s`` of wall time
(checked once every ``check_every`` timestamps in an unpaced run, and at every idle tick of a
paced one) and publishes it by replacing one reference: readers on other threads (``ctl
status``, the dashboard, the stress harness) read ``SnapshotPublisher.latest`` without a
lock and never touch the hot path. A snapshot is plain data (tuples, floats, strings): safe
to serialise and to keep.

What the kernel thread pays per snapshot is kept small, because it is paid between two bars
of a session that may run flat out: the decision-latency window's percentiles are read from
one numpy sort (an HdrHistogram filled value by value in Python cost 8–26 ms per 4,000
decisions, every snapshot), and nothing is encoded there. The JSON a reader serves is
encoded by ``latest_json`` on the *reader's* thread, with orjson straight from the frozen
dataclass (~30 µs, against ~2 ms for ``asdict`` + FastAPI's ``jsonable_encoder``), at most
once per snapshot however many clients poll: a dashboard polling four times a second costs
the session one encoding per published snapshot and a few bytes copied per poll.
"""

from __future__ import annotations

import gc
import math
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from ultrathink.core.events import Fill
from ultrathink.core.latency import PERCENTILES, LatencyLog
from ultrathink.engine.working import WorkingOrders
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine


@dataclass(frozen=True)
class PositionView:
    """One open position at the time of the snapshot."""

    symbol: str
    quantity: float
    avg_price: float
    last_price: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class EngineSnapshot:
    """What a running session looks like at one instant (see the module docstring)."""

    seq: int
    run_id: int | None
    mode: str
    wall_ns: int
    clock_ns: int
    replaying: bool
    finished: bool
    n_bars: int
    equity: float
    cash: float
    peak_equity: float
    positions: tuple[PositionView, ...]
    working_orders: tuple[tuple[str, str, str, float, float | None], ...]
    trading_state: str
    state_reason: str
    disabled_symbols: tuple[str, ...]
    limits: Mapping[str, float | None]
    order_counts: Mapping[str, int]
    denials: Mapping[str, int]
    n_fills: int
    hardening: Mapping[str, Any]
    decision_latency_us: Mapping[str, float] | None
    bars_per_s: float
    #: decisions timed per second of wall time since the previous snapshot (0 when the
    #: session does not measure decision latency)
    decisions_per_s: float = 0.0
    #: the newest fills, oldest first: (ts_ns, symbol, side, quantity, price)
    recent_fills: tuple[tuple[int, str, str, float, float], ...] = ()
    #: the last marked price of every symbol seen
    prices: Mapping[str, float] = field(default_factory=dict)
    #: tokens left in each order and cancel rate window (empty without rate limits)
    rate_limits: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: the strategy's decision statistics (model version, fallbacks, holds)
    strategy: Mapping[str, Any] = field(default_factory=dict)
    #: fills the venue reported twice (same fill id): dropped, audited, never booked
    n_duplicate_fills: int = 0
    #: the session process's garbage collector: collections per generation
    gc_collections: tuple[int, ...] = ()
    #: per-stage latency of the profiler's recent sampled bars (µs): ``{stage: {"p50", "p90",
    #: "p99", "n"}}``; empty when the session is not profiled (see ``perf/profiler.py``)
    stages: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


#: how many of the newest fills a snapshot carries
RECENT_FILLS = 20


class SnapshotSource:
    """The components a snapshot reads (all on the kernel thread)."""

    def __init__(
        self,
        portfolio: Portfolio,
        working: WorkingOrders,
        risk: RiskEngine,
        order_counts: Callable[[], Mapping[str, int]],
        denials: Callable[[], Mapping[str, int]],
        n_fills: Callable[[], int],
        hardening: Callable[[], Mapping[str, Any]] | None,
        limits: Callable[[], Mapping[str, float | None]],
        recent_fills: Callable[[], Sequence[Fill]] = tuple,
        rate_limits: Callable[[], Mapping[str, Mapping[str, float]]] | None = None,
        strategy_stats: Callable[[], Mapping[str, Any]] | None = None,
        duplicate_fills: Callable[[], int] | None = None,
    ) -> None:
        self.portfolio = portfolio
        self.working = working
        self.risk = risk
        self.order_counts = order_counts
        self.denials = denials
        self.n_fills = n_fills
        self.hardening = hardening
        self.limits = limits
        self.recent_fills = recent_fills
        self.rate_limits = rate_limits
        self.strategy_stats = strategy_stats
        self.duplicate_fills = duplicate_fills


class SnapshotPublisher:
    """Builds and publishes snapshots at a bounded rate (kernel thread); ``latest`` for readers.

    Parameters
    ----------
    source : SnapshotSource
        What to read.
    run_id, mode : int or None, str
        Identify the session.
    latency : LatencyLog or None
        The kernel's decision latencies (ns), when measured: each snapshot reports the
        percentiles of those recorded since the previous one.
    interval_s : float
        Smallest wall time between two snapshots.
    check_every : int
        Timestamps between two looks at the wall clock in an unpaced run.
    """

    def __init__(
        self,
        source: SnapshotSource,
        run_id: int | None,
        mode: str,
        latency: LatencyLog | None = None,
        *,
        interval_s: float = 0.25,
        check_every: int = 256,
        wall_ns: Callable[[], int] = time.time_ns,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._source = source
        self._run_id = run_id
        self._mode = mode
        self._latency = latency
        self._interval_ns = int(interval_s * 1e9)
        self.check_every = check_every
        self._wall_ns = wall_ns
        self._mono_ns = mono_ns
        self._next_ns = 0
        self._seq = 0
        self._lat_from = 0
        self._bars_at = (0, mono_ns())
        #: the newest snapshot (None before the first); replaced, never mutated
        self.latest: EngineSnapshot | None = None
        #: the newest snapshot's JSON, encoded by the first reader that asked for it
        self._json: tuple[EngineSnapshot, bytes] | None = None
        #: per-stage latency percentiles of a profiled session, read at each snapshot on the
        #: kernel thread (``Profiler.live_stages``); set once the profiler is attached
        self.stage_source: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None

    def maybe_publish(self, n_bars: int, clock_ns: int, replaying: bool) -> None:
        """Publish if ``interval_s`` passed since the last snapshot."""
        if self._mono_ns() >= self._next_ns:
            self.publish(n_bars, clock_ns, replaying)

    def publish(
        self, n_bars: int, clock_ns: int, replaying: bool = False, *, finished: bool = False
    ) -> EngineSnapshot:
        """Build a snapshot now and make it ``latest``."""
        now = self._mono_ns()
        self._next_ns = now + self._interval_ns
        self._seq += 1
        snap = self._build(n_bars, clock_ns, replaying, finished, now)
        self.latest = snap
        return snap

    def latest_json(self) -> tuple[int, bytes] | None:
        """``(seq, JSON)`` of the newest snapshot (None before the first), for readers on
        other threads: encoded on the caller's thread, once per snapshot (see the module
        docstring). Two readers racing on a new snapshot may both encode it; either result
        is kept, both are the same bytes."""
        snap = self.latest
        if snap is None:
            return None
        cached = self._json
        if cached is not None and cached[0] is snap:
            return snap.seq, cached[1]
        data = encode_snapshot(snap)
        self._json = (snap, data)
        return snap.seq, data

    def _build(
        self, n_bars: int, clock_ns: int, replaying: bool, finished: bool, now: int
    ) -> EngineSnapshot:
        src = self._source
        pf, risk = src.portfolio, src.risk
        prev_n, prev_t = self._bars_at
        self._bars_at = (n_bars, now)
        span_s = (now - prev_t) / 1e9 if now > prev_t else float("inf")
        rate = (n_bars - prev_n) / span_s
        latency, decisions = self._latency_window()
        return EngineSnapshot(
            seq=self._seq, run_id=self._run_id, mode=self._mode, wall_ns=self._wall_ns(),
            clock_ns=clock_ns, replaying=replaying, finished=finished, n_bars=n_bars,
            equity=pf.equity(), cash=pf.cash, peak_equity=risk.peak_equity,
            positions=_positions(pf), working_orders=tuple(
                (o.client_order_id, o.symbol, o.side.value, o.remaining, o.price)
                for o in src.working.orders()
            ),
            trading_state=risk.state.value, state_reason=risk.state_reason,
            disabled_symbols=tuple(sorted(risk.disabled_symbols)), limits=src.limits(),
            order_counts=dict(src.order_counts()), denials=dict(src.denials()),
            n_fills=src.n_fills(),
            n_duplicate_fills=src.duplicate_fills() if src.duplicate_fills is not None else 0,
            hardening=dict(src.hardening()) if src.hardening is not None else {},
            decision_latency_us=latency, bars_per_s=rate, decisions_per_s=decisions / span_s,
            recent_fills=tuple(
                (f.ts_ns, f.symbol, f.side.value, f.quantity, f.price)
                for f in src.recent_fills()[-RECENT_FILLS:]
            ),
            prices=pf.last_prices(),
            rate_limits=src.rate_limits() if src.rate_limits is not None else {},
            strategy=self._strategy_stats(),
            gc_collections=tuple(g["collections"] for g in gc.get_stats()),
            stages=self._stages(),
        )  # fmt: skip

    def _strategy_stats(self) -> dict[str, Any]:
        # a strategy's stats() is its author's code, and may read state on_start sets: a
        # failing one is shown, never allowed to stop the session
        stats = self._source.strategy_stats
        if stats is None:
            return {}
        try:
            return dict(stats())
        except Exception as exc:
            return {"error": f"stats() failed: {exc!r}"[:200]}

    def _stages(self) -> Mapping[str, Mapping[str, Any]]:
        source = self.stage_source
        if source is None:
            return {}
        try:
            return source()
        except Exception as exc:  # a reading, never a reason to stop the session
            return {"error": {"message": f"stage percentiles failed: {exc!r}"[:200]}}

    def _latency_window(self) -> tuple[dict[str, float] | None, int]:
        lat = self._latency
        if lat is None:
            return None, 0
        window, self._lat_from = lat.window(self._lat_from)
        if not window:
            return None, 0
        return window_percentiles_us(window), len(window)


def window_percentiles_us(values_ns: array[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max and count of a non-empty window of durations (ns), in µs: the
    keys of ``core.latency.percentiles_us``, exact nearest-rank values from one sort."""
    ordered = np.sort(np.frombuffer(values_ns, dtype=np.int64))
    n = len(ordered)
    out = {
        f"p{p:g}": float(ordered[max(math.ceil(p / 100.0 * n), 1) - 1]) / 1000.0
        for p in PERCENTILES
    }
    out["max"] = float(ordered[-1]) / 1000.0
    out["count"] = float(n)
    return out


def _json_default(obj: Any) -> Any:
    # what orjson does not know: sets, pydantic models, any other mapping; else its text
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    if isinstance(obj, Mapping):
        return dict(obj)
    return str(obj)


def encode_snapshot(snap: EngineSnapshot) -> bytes:
    """The JSON of ``snap`` (the shape of ``to_dict``; NaN and infinities become null)."""
    return orjson.dumps(
        snap, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    )


def _positions(pf: Portfolio) -> tuple[PositionView, ...]:
    return tuple(
        PositionView(s, p.quantity, p.avg_price, p.last_price, p.unrealized_pnl, p.realized_pnl)
        for s, p in sorted(pf.positions().items())
        if p.quantity
    )
