"""The hardening layer of one run: four circuit breakers, their fallbacks, degraded mode.

=============  ===========================  =============================================
breaker        guards                       fallback while OPEN
=============  ===========================  =============================================
decision       ``Strategy.on_bar`` (model)  hold: no new orders; indicators keep updating
market_data    every bar (bad bar; paced:   the bad bar is dropped, prices stay at the last
               no bar for N x interval)     good bar; trading REDUCING until it closes
execution      broker submit / cancel       the order is denied BROKER_UNAVAILABLE
risk           the pre-trade check          the kill switch fires (HALTED)
=============  ===========================  =============================================

Every breaker transition, trading-state change made here and degraded-mode change is a
``HardeningEvent`` (kept in ``events`` and published on the run's bus), an audit row and a
Prometheus metric. Everything runs on the kernel thread: breakers are only called from it,
and operator commands reach it through ``engine/control.py``'s queue.

``StateArbiter`` owns the REDUCING that several sources may ask for at once (market data,
degraded mode, operator): trading goes back to ACTIVE only when the last of them clears, and
never leaves HALTED by itself — only the kill switch's audited ``resume`` does that.
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from ultrathink.core.bus import MessageBus
from ultrathink.core.clock import Clock, LiveClock
from ultrathink.core.enums import DenyReason, TradingState
from ultrathink.core.events import Bar
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import HardeningConfig
from ultrathink.engine.context import TradingContext
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.metrics import RunMetrics
from ultrathink.hardening.breaker import BreakerState, BreakerTransition, CircuitBreaker
from ultrathink.hardening.degraded import DegradedModeMonitor, DegradedTransition
from ultrathink.risk.engine import RiskEngine

_NS = 1_000_000_000
_INF = math.inf
#: How many hardening events a run keeps in memory (all of them are in the audit trail).
MAX_KEPT_EVENTS = 1000


class HardeningEvent(NamedTuple):
    """One transition: ``ts_ns`` on the run's clock, ``wall_ns`` real time, what and why."""

    ts_ns: int
    wall_ns: int
    kind: str  # breaker | degraded | trading_state | decision | execution | operator
    name: str
    detail: str


class StateArbiter:
    """REDUCING requested by several sources; ACTIVE again when the last one clears."""

    def __init__(self, risk: RiskEngine, emit: Callable[[str, str, str], None]) -> None:
        self._risk = risk
        self._emit = emit
        self._reasons: dict[str, tuple[DenyReason, str]] = {}
        self._owns = False  # whether the current REDUCING is ours (not a drawdown breach)

    @property
    def reasons(self) -> dict[str, str]:
        """Active sources of REDUCING and their details."""
        return {source: detail for source, (_, detail) in self._reasons.items()}

    def reduce(self, source: str, code: DenyReason, detail: str) -> None:
        """Ask for REDUCING on behalf of ``source`` (idempotent)."""
        self._reasons[source] = (code, detail)
        self.apply()

    def release(self, source: str) -> None:
        """Withdraw ``source``'s request; ACTIVE again when none is left."""
        if self._reasons.pop(source, None) is not None:
            self.apply()

    def clear_operator(self) -> None:
        """Drop the operator's own REDUCING (an operator resume)."""
        self._reasons.pop("operator", None)

    def apply(self) -> None:
        """Bring the risk engine's state in line with the active requests."""
        risk = self._risk
        if risk.state is TradingState.HALTED:
            self._owns = False
            return
        if risk.state is TradingState.REDUCING and not self._owns:
            return  # a drawdown breach: only an operator resume ends it
        if self._reasons:
            source, (code, detail) = next(reversed(self._reasons.items()))
            reason = f"{source}: {detail}"
            if risk.state is not TradingState.REDUCING or risk.state_reason != reason:
                risk.set_state(TradingState.REDUCING, reason, code)
                self._owns = True
                self._emit("trading_state", "REDUCING", reason)
        elif self._owns:
            risk.set_state(TradingState.ACTIVE, "every REDUCING request cleared")
            self._owns = False
            self._emit("trading_state", "ACTIVE", "every REDUCING request cleared")


class Guards:
    """Breakers, fallbacks, degraded mode and the events they produce, for one run."""

    def __init__(
        self,
        config: HardeningConfig,
        clock: Clock,
        ctx: TradingContext,
        risk: RiskEngine,
        kill: KillSwitch,
        *,
        paced_stale_s: float | None = None,
        wall_clock: LiveClock | None = None,
        metrics: RunMetrics | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall_clock or LiveClock()
        self._ctx = ctx
        self._kill = kill
        self.metrics = metrics if metrics is not None else RunMetrics()
        self.bus = MessageBus()
        self.events: deque[HardeningEvent] = deque(maxlen=MAX_KEPT_EVENTS)
        self.arbiter = StateArbiter(risk, self.emit)
        self.decision = CircuitBreaker(config.decision, clock)
        self.execution = CircuitBreaker(config.execution, clock)
        self.risk = CircuitBreaker(config.risk, clock)
        md = config.market_data
        self._paced = paced_stale_s is not None
        self._fed = False
        if paced_stale_s is not None:  # a live feed: staleness on the wall clock
            md = md.model_copy(update={"stale_after_s": paced_stale_s})
            self.market_data = CircuitBreaker(md, self._wall)
        else:
            self.market_data = CircuitBreaker(md, clock)
        self.breakers = {
            b.name: b for b in (self.decision, self.market_data, self.execution, self.risk)
        }
        for b in self.breakers.values():
            b.on_transition(self._on_breaker)
            self.metrics.set_breaker(b.name, "CLOSED", transition=False)
        self.md_closed = True  # read per bar: the market-data breaker's fast path
        self.n_holds = 0
        self.n_bad_bars = 0
        self.degraded: DegradedModeMonitor | None = None
        if config.degraded is not None:
            cfg = config.degraded
            if paced_stale_s is None:  # unpaced runs are meant to keep a core busy
                cfg = cfg.model_copy(update={"cpu_enter_pct": None})
            self.degraded = DegradedModeMonitor(cfg, self._wall)
            self.degraded.on_change(self._on_degraded)
            self.degraded.add_cleanup(self._cleanup)
        self._n_ticks = 0
        self._last_sample_ns = 0
        kill.listeners.append(self._on_kill)
        self.metrics.trading_state.state(risk.state.value)

    # -- events -----------------------------------------------------------------------------
    def emit(self, kind: str, name: str, detail: str) -> None:
        """Record one hardening event: kept, published, audited and (state) measured."""
        event = HardeningEvent(self._clock.now_ns(), time.time_ns(), kind, name, detail)
        self.events.append(event)
        self.bus.publish("hardening", event)
        self._ctx.audit(f"{kind}.{name}", detail)
        if kind == "trading_state":
            self.metrics.trading_state.state(name)

    def _on_breaker(self, t: BreakerTransition) -> None:
        self.metrics.set_breaker(t.name, t.to_state.value, transition=True)
        self.emit("breaker", t.name, f"{t.from_state.value} -> {t.to_state.value}: {t.reason}")
        if t.name == "market_data":
            self.md_closed = t.to_state is BreakerState.CLOSED
            if t.to_state is BreakerState.OPEN:
                self.arbiter.reduce("market_data", DenyReason.DATA_STALE, t.reason)
            elif t.to_state is BreakerState.CLOSED:
                self.arbiter.release("market_data")
        elif t.name == "risk" and t.to_state is BreakerState.OPEN:
            kill = self._kill
            kill.trigger(t.reason, source="risk_breaker", flatten=kill.auto_flatten)

    def _on_degraded(self, t: DegradedTransition) -> None:
        self.metrics.degraded.set(1 if t.entered else 0)
        reasons = ",".join(t.reasons)
        self.emit("degraded", "entered" if t.entered else "left", f"{reasons}: {t.detail}")
        if t.entered:
            self.arbiter.reduce("degraded", DenyReason.DEGRADED_MODE, f"{reasons}: {t.detail}")
        else:
            self.arbiter.release("degraded")

    def _on_kill(self, source: str, reason: str) -> None:
        self.metrics.kill_switch.labels(source=source).inc()
        self.metrics.trading_state.state(TradingState.HALTED.value)

    def _cleanup(self) -> None:
        # memory pressure: drop what the session keeps only for reporting, then collect
        trimmed = (
            self._ctx.broker.trim_history() if hasattr(self._ctx.broker, "trim_history") else 0
        )
        gc.collect()
        self.emit("degraded", "cleanup", f"trimmed {trimmed} terminal orders; gc collected")

    # -- decision ---------------------------------------------------------------------------
    def guard_decision(
        self, on_bar: Callable[[Bar], None], strategy: Strategy
    ) -> Callable[[Bar], None]:
        """Wrap ``on_bar``: refused or failing decisions become holds (no new orders).

        A decision fails when ``on_bar`` raises or the strategy reports a decision it could
        not make (``Strategy.failed_decision``, e.g. a model with no healthy fallback).
        While the breaker refuses, ``Strategy.on_bar_held`` lets the strategy keep its own
        state (features) in step with the bars.
        """
        allow, success, failure = (
            self.decision.allow,
            self.decision.record_success,
            self.decision.record_failure,
        )
        held = strategy.on_bar_held
        monitor = self.degraded.record_latency_ns if self.degraded is not None else None
        clock = time.perf_counter_ns

        def guarded(bar: Bar) -> None:
            if not allow():
                self.n_holds += 1
                held(bar)
                return
            t0 = clock()
            try:
                on_bar(bar)
            except Exception as exc:
                failure(f"{type(exc).__name__}: {exc}")
                self.n_holds += 1
                self.metrics.fallbacks.labels(kind="hold").inc()
                self._ctx.audit("decision.error", f"{bar.symbol}: {exc!r}; fallback hold")
                return
            dt = clock() - t0
            if strategy.failed_decision:
                failure(strategy.failed_decision)
                strategy.failed_decision = ""
            else:
                success(dt / _NS)
            if monitor is not None:
                monitor(dt)

        return guarded

    # -- market data ------------------------------------------------------------------------
    def bad_bar(self, bar: Bar) -> bool:
        """True (and a breaker failure) when ``bar`` cannot be used (before the clock moves)."""
        o, h, lo, c = bar[2], bar[3], bar[4], bar[5]
        if 0.0 < lo <= c <= h < _INF and lo <= o <= h:
            return False
        self.n_bad_bars += 1
        self.market_data.record_failure(
            f"bad bar {bar.symbol} ts_ns={bar.ts_ns}: open={o} high={h} low={lo} close={c}"
        )
        return True

    # -- periodic work ----------------------------------------------------------------------
    def tick(self) -> None:
        """Per new timestamp: feed heartbeat (paced), unknown orders, kill-switch upkeep and
        degraded sampling."""
        if self._paced:
            self._fed = True
            self.market_data.record_heartbeat()
        if not self.md_closed and self.market_data.allow():  # a good bar at its own time
            self.market_data.record_success()
        ctx = self._ctx
        if ctx.has_unknown_orders:
            ctx.resolve_unknown_orders()
        if self._kill.is_engaged:
            self._kill.maintain()
        self._n_ticks += 1
        if self.degraded is not None and self._n_ticks % self.config.degraded_sample_bars == 0:
            self.degraded.sample()

    def idle(self) -> None:
        """While a paced session waits for the next bar: staleness and degraded sampling."""
        if self._fed:  # the watchdog starts with the first bar
            self.market_data.check_staleness()
        now = time.perf_counter_ns()
        if self.degraded is not None and now - self._last_sample_ns >= 100_000_000:
            self._last_sample_ns = now
            self.degraded.sample()

    def snapshot(self) -> dict[str, object]:
        """Breaker states, REDUCING sources, degraded mode and counters (for status)."""
        readings = self.degraded.readings if self.degraded is not None else None
        return {
            "breakers": {name: b.state.value for name, b in self.breakers.items()},
            "reducing_sources": self.arbiter.reasons,
            "degraded": bool(self.degraded is not None and self.degraded.is_degraded),
            "degraded_readings": readings._asdict() if readings is not None else None,
            "decision_holds": self.n_holds,
            "bad_bars": self.n_bad_bars,
        }
