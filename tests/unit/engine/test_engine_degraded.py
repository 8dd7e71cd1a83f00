"""Degraded mode wired into a run: slow decisions make trading REDUCING, fast ones end it.

A strategy that sleeps 250 ms in some ``on_bar`` calls pushes the p99 of the last decisions
over ``latency_enter_ms`` (150 ms: far above what a fast decision takes even on a loaded
machine, far below the sleep); the monitor (sampled every timestamp here) asks the arbiter for
REDUCING, so buys are denied DEGRADED_MODE; once decisions are fast again and the p99 drops
below ``latency_exit_ms``, trading is ACTIVE again by itself. Transitions are session inputs
(recorded, then applied), events, audit rows and the ``ultrathink_degraded`` metric.
"""

from __future__ import annotations

import time

from ultrathink.config import realistic_defaults
from ultrathink.core.enums import DenyReason, TradingState
from ultrathink.core.events import Bar, OrderDenied
from ultrathink.data import load_data
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.risk.engine import RiskEngine
from ultrathink.testing.engine import engine_for

SLOW = range(40, 43)  # bars whose decision takes 250 ms


class SlowThenFast(Strategy):
    name = "slow_then_fast"

    def __init__(self) -> None:
        super().__init__()
        self.risk: RiskEngine | None = None  # the run's risk engine: reads the trading state

    def on_start(self) -> None:
        self.n = 0
        self.states: list[TradingState] = []
        self.denied: list[OrderDenied] = []

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        assert self.risk is not None
        self.states.append(self.risk.state)
        if self.n in SLOW:
            time.sleep(0.25)
        if self.n % 2 == 0:
            self.buy(bar.symbol, 1)
        else:
            self.sell(bar.symbol, 1) if self.position(bar.symbol) > 0 else None

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denied.append(denied)


def test_slow_decisions_enter_degraded_mode_and_fast_ones_leave_it() -> None:
    values = realistic_defaults()
    values["hardening"] = {
        "enabled": True,
        "degraded_sample_bars": 1,
        "degraded": {"cpu_enter_pct": None, "latency_enter_ms": 150.0, "latency_exit_ms": 50.0,
                     "latency_window": 10, "latency_min_samples": 5, "min_dwell_s": 0.0},
    }  # fmt: skip
    config = EngineConfig(**values)
    data = load_data("synthetic:n_bars=120,seed=2")
    strategy = SlowThenFast()
    engine = engine_for(strategy, data, config, mode="paper")
    strategy.risk = engine.parts.risk

    engine.kernel.run(data)

    guards = engine.kernel.guards
    assert guards is not None
    kinds = [(e.kind, e.name) for e in guards.events if e.kind in ("degraded", "trading_state")]
    assert kinds[:2] == [("degraded", "entered"), ("trading_state", "REDUCING")]
    assert ("degraded", "left") in kinds and kinds[-1] == ("trading_state", "ACTIVE")
    first_n = strategy.states.index(TradingState.REDUCING) + 1  # the bar count n
    assert first_n == SLOW.start + 1, "REDUCING from the bar after the first slow decision"
    assert strategy.states[-1] is TradingState.ACTIVE
    degraded = [d for d in strategy.denied if d.reason is DenyReason.DEGRADED_MODE]
    assert degraded and all(d.detail.startswith("trading is REDUCING (degraded") for d in degraded)
    assert b"ultrathink_degraded 0.0" in guards.metrics.exposition()
