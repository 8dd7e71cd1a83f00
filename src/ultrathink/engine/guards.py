"""The hardening layer of one run: four circuit breakers, their fallbacks, degraded mode.

=============  ===========================  =============================================
breaker        guards                       fallback while OPEN
=============  ===========================  =============================================
decision       ``Strategy.on_bar`` (model)  hold: no new orders; indicators keep updating
market_data    every bar (a bad bar)        the bad bar is dropped, prices stay at the last
                                            good bar; trading REDUCING until it closes
execution      broker submit / cancel       the order is denied BROKER_UNAVAILABLE
risk           the pre-trade check          the kill switch fires (HALTED)
=============  ===========================  =============================================

The breakers run on the run's clock (bar time), so they are deterministic: a replay of the
same bars opens and closes them at the same bars. What depends on the wall clock is kept
apart and goes through the session's input log (``engine/inputs.py``), so a restart replays
it exactly: degraded mode (latency, CPU, memory) and, in a paced session, the feed
watchdog — no bar for ``stale_after_s`` of wall time asks for REDUCING (``DATA_STALE``) until
the next bar arrives.

Every transition is a ``HardeningEvent`` (kept in ``events`` and published on the run's
bus), an audit row and a Prometheus metric. Everything runs on the kernel thread.

``StateArbiter`` owns the REDUCING that several sources may ask for at once (market data,
feed, degraded mode, operator): trading goes back to ACTIVE only when the last of them
clears, and never leaves HALTED by itself — only the kill switch's audited ``resume`` does.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ultrathink.core.bus import MessageBus
from ultrathink.core.clock import Clock
from ultrathink.core.enums import DenyReason, TradingState
from ultrathink.core.events import Bar
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import HardeningConfig
from ultrathink.engine.inputs import SessionInputs
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.router import OrderRouter
from ultrathink.errors import PersistenceError, StrategyError
from ultrathink.hardening.breaker import BreakerState, BreakerTransition, CircuitBreaker
from ultrathink.hardening.degraded import DegradedModeMonitor, DegradedTransition
from ultrathink.risk.engine import RiskEngine

if TYPE_CHECKING:
    from ultrathink.engine.metrics import RunMetrics  # prometheus-client: sessions only

_INF = float("inf")
#: How many hardening events a run keeps in memory (all of them are in the audit trail).
MAX_KEPT_EVENTS = 1000
#: Bus topic of every hardening event.
HARDENING = "hardening"


class HardeningEvent(NamedTuple):
    """One transition: ``ts_ns`` on the run's clock, ``wall_ns`` real time, what and why."""

    ts_ns: int
    wall_ns: int
    kind: str  # breaker | degraded | feed | trading_state | decision | execution | operator
    name: str
    detail: str


class Breakers(NamedTuple):
    """The four circuit breakers of a run, on the run's clock."""

    decision: CircuitBreaker
    market_data: CircuitBreaker
    execution: CircuitBreaker
    risk: CircuitBreaker

    @classmethod
    def build(cls, config: HardeningConfig, clock: Clock) -> Breakers:
        """One breaker per component, from ``config``."""
        return cls(
            CircuitBreaker(config.decision, clock),
            CircuitBreaker(config.market_data, clock),
            CircuitBreaker(config.execution, clock),
            CircuitBreaker(config.risk, clock),
        )

    def by_name(self) -> dict[str, CircuitBreaker]:
        """Name -> breaker."""
        return {b.name: b for b in self}


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
    """Breakers, fallbacks, degraded mode, the feed watchdog and their events, for one run.

    Parameters
    ----------
    config : HardeningConfig
        Thresholds.
    clock : Clock
        The run's clock (event times, breaker timers).
    breakers : Breakers
        Built by the wiring; the router holds the risk and execution ones too.
    router : OrderRouter
        Audit rows, unknown orders to resolve, the broker's memory to trim.
    risk : RiskEngine
        Its state is what the arbiter moves.
    kill : KillSwitch
        Fired when the risk breaker opens; kept up while engaged.
    inputs : SessionInputs
        Where wall-clock transitions are written ahead (and replayed from).
    bus : MessageBus
        ``hardening`` events are published on it.
    metrics : RunMetrics
        Breaker, state and degraded gauges.
    degraded : DegradedModeMonitor or None
        Degraded-mode judge (None: off).
    trim_history : callable or None
        Frees the broker's memory of terminal orders (the degraded cleanup).
    feed_stale_s : float or None
        Paced sessions: wall seconds without a bar before the feed counts as stale.
    mono_ns : callable
        The wall monotonic clock.
    """

    def __init__(
        self,
        config: HardeningConfig,
        clock: Clock,
        breakers: Breakers,
        router: OrderRouter,
        risk: RiskEngine,
        kill: KillSwitch,
        inputs: SessionInputs,
        bus: MessageBus,
        metrics: RunMetrics,
        *,
        degraded: DegradedModeMonitor | None = None,
        trim_history: Callable[[], int] | None = None,
        feed_stale_s: float | None = None,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.config = config
        self._clock = clock
        self._router = router
        self._kill = kill
        self._inputs = inputs
        self.bus = bus
        self.metrics = metrics
        self.events: deque[HardeningEvent] = deque(maxlen=MAX_KEPT_EVENTS)
        self.arbiter = StateArbiter(risk, self.emit)
        self.breakers = breakers.by_name()
        self.decision, self.market_data = breakers.decision, breakers.market_data
        for b in breakers:
            b.on_transition(self._on_breaker)
            metrics.set_breaker(b.name, "CLOSED", transition=False)
        self.md_closed = True  # read per bar: the market-data breaker's fast path
        self.n_holds = 0
        self.n_bad_bars = 0
        self.degraded = degraded
        self._is_degraded = False  # as last applied (live or replayed)
        self._trim = trim_history
        self._stale_ns = int(feed_stale_s * 1e9) if feed_stale_s is not None else None
        self._mono = mono_ns
        self._last_bar_mono: int | None = None
        self.feed_stale = False
        self._n_ticks = 0
        self._last_sample_ns = 0
        if degraded is not None:
            degraded.on_change(self._degraded_changed)
            degraded.add_cleanup(self._degraded_cleanup)
        inputs.on("degraded", self._apply_degraded)
        inputs.on("degraded_cleanup", self._apply_cleanup)
        inputs.on("feed", self._apply_feed)
        kill.listeners.append(self._on_kill)
        metrics.trading_state.state(risk.state.value)

    # -- events -----------------------------------------------------------------------------
    def emit(self, kind: str, name: str, detail: str) -> None:
        """Record one hardening event: kept, published, audited and (state) measured."""
        event = HardeningEvent(self._clock.now_ns(), time.time_ns(), kind, name, detail)
        self.events.append(event)
        self.bus.publish(HARDENING, event)
        self._router.audit(f"{kind}.{name}", detail)
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
            self._kill.fire(t.reason, "risk_breaker")

    def _on_kill(self, source: str, reason: str) -> None:
        self.metrics.kill_switch.labels(source=source).inc()
        self.metrics.trading_state.state(TradingState.HALTED.value)

    # -- wall-clock sources: written ahead as session inputs --------------------------------
    def _degraded_changed(self, t: DegradedTransition) -> None:
        if not self._inputs.replaying:
            data = {"entered": t.entered, "reasons": sorted(t.reasons), "detail": t.detail}
            self._inputs.submit("degraded", data)

    def _degraded_cleanup(self) -> None:
        if not self._inputs.replaying:
            self._inputs.submit("degraded_cleanup", {})

    def _apply_degraded(self, data: dict[str, Any], wall_ns: int) -> None:
        entered, reasons = bool(data["entered"]), ",".join(data["reasons"])
        self._is_degraded = entered
        self.metrics.degraded.set(1 if entered else 0)
        self.emit("degraded", "entered" if entered else "left", f"{reasons}: {data['detail']}")
        if entered:
            detail = f"{reasons}: {data['detail']}"
            self.arbiter.reduce("degraded", DenyReason.DEGRADED_MODE, detail)
        else:
            self.arbiter.release("degraded")

    def _apply_cleanup(self, data: dict[str, Any], wall_ns: int) -> None:
        # memory pressure: drop what the session keeps only for reporting, then collect
        trimmed = self._trim() if self._trim is not None else 0
        gc.collect()
        self.emit("degraded", "cleanup", f"trimmed {trimmed} terminal orders; gc collected")

    def _apply_feed(self, data: dict[str, Any], wall_ns: int) -> None:
        self.feed_stale = bool(data["stale"])
        self.emit("feed", "stale" if self.feed_stale else "fresh", str(data["detail"]))
        if self.feed_stale:
            self.arbiter.reduce("feed", DenyReason.DATA_STALE, str(data["detail"]))
        else:
            self.arbiter.release("feed")

    def go_live(self) -> None:
        """A replay ended: what the wall clock decided before the restart starts over.

        Degraded mode and a stale feed are judged afresh by this process, so a session that
        was in either when it stopped leaves it now (recorded as inputs, like any change).
        """
        if self._is_degraded:
            self._inputs.submit(
                "degraded", {"entered": False, "reasons": [], "detail": "restarted"}
            )
        if self.feed_stale:
            self._inputs.submit("feed", {"stale": False, "detail": "restarted"})

    # -- decision ---------------------------------------------------------------------------
    def guard_decision(
        self, on_bar: Callable[[Bar], None], strategy: Strategy
    ) -> Callable[[Bar], None]:
        """Wrap ``on_bar``: refused or failing decisions become holds (no new orders).

        A decision fails when ``on_bar`` raises or the strategy reports a decision it could
        not make (``Strategy.failed_decision``, e.g. a model with no healthy fallback).
        While the breaker refuses, ``Strategy.on_bar_held`` lets the strategy keep its own
        state (features) in step with the bars. Decision latency feeds degraded mode, never
        the breaker: the breaker must decide the same way when a restart replays the bars.

        A ``MemoryError`` is not a failed decision: the process is out of memory, and holding
        bar after bar would only meet it again wherever it strikes next (the recorder, the
        store). It stops the session: a ``StrategyError`` saying so goes up (the session is
        stored failed, the CLI prints one ``error:`` line, ``paper --resume`` continues once
        memory is available). Degraded mode (memory against the process's limit) is meant
        to have reduced trading well before. A ``PersistenceError`` (the venue journal or
        the store cannot be written: a full disk) stops the session as it is: holding would
        leave the order it was sending half-recorded.
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
            except MemoryError as exc:
                degraded = "on" if self._is_degraded else "off"
                raise StrategyError(
                    f"out of memory: strategy {strategy.name!r} could not allocate in on_bar "
                    f"(MemoryError at {bar.symbol} ts_ns={bar.ts_ns}; degraded mode was "
                    f"{degraded}); the session stops: raise the memory limit or lower the "
                    "strategy's use, then `ultrathink paper --resume` continues it"
                ) from exc
            except PersistenceError:  # a store or venue journal that cannot be written
                raise
            except Exception as exc:
                failure(f"{type(exc).__name__}: {exc}")
                self.n_holds += 1
                self.metrics.fallbacks.labels(kind="hold").inc()
                self._router.audit("decision.error", f"{bar.symbol}: {exc!r}; fallback hold")
                return
            if strategy.failed_decision:
                failure(strategy.failed_decision)
                strategy.failed_decision = ""
            else:
                success()
            if monitor is not None:
                monitor(clock() - t0)

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
        """Per new timestamp: feed heartbeat, breaker recovery, unknown orders, kill-switch
        upkeep and degraded sampling."""
        live = not self._inputs.replaying
        if self._stale_ns is not None and live:
            self._last_bar_mono = self._mono()
            if self.feed_stale:
                self._inputs.submit("feed", {"stale": False, "detail": "a bar arrived"})
        if not self.md_closed and self.market_data.allow():  # a good bar at its own time
            self.market_data.record_success()
        router = self._router
        if router.has_unknown_orders:
            router.resolve_unknown_orders()
        if self._kill.is_engaged:
            self._kill.maintain()
        self._n_ticks += 1
        sample_due = self._n_ticks % self.config.degraded_sample_bars == 0
        if self.degraded is not None and live and sample_due:
            self.degraded.sample()

    def idle(self) -> None:
        """While a paced session waits for the next bar: feed watchdog and degraded sampling."""
        now = self._mono()
        last = self._last_bar_mono
        stale = self._stale_ns is not None and last is not None and now - last > self._stale_ns
        if stale and not self.feed_stale:
            waited = (now - (last or now)) / 1e9
            self._inputs.submit("feed", {"stale": True, "detail": f"no bar for {waited:.2f} s"})
        if self.degraded is not None and now - self._last_sample_ns >= 100_000_000:
            self._last_sample_ns = now
            self.degraded.sample()

    def snapshot(self) -> dict[str, object]:
        """Breaker states, REDUCING sources, degraded mode and counters (for status)."""
        readings = self.degraded.readings if self.degraded is not None else None
        return {
            "breakers": {name: b.state.value for name, b in self.breakers.items()},
            "reducing_sources": self.arbiter.reasons,
            "degraded": self._is_degraded,
            "degraded_readings": readings._asdict() if readings is not None else None,
            "feed_stale": self.feed_stale,
            "decision_holds": self.n_holds,
            "bad_bars": self.n_bad_bars,
        }
