"""Kill switch, crash detector, order rate limits and a failing risk check, in the engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ultrathink.core.enums import DenyReason, OrderStatus, TradingState
from ultrathink.core.events import Bar, OrderDenied
from ultrathink.data import MarketData, load_data
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig, KillSwitchConfig
from ultrathink.engine.runner import RunSpec, run
from ultrathink.engine.wiring import Engine
from ultrathink.hardening.crash import CrashConfig, CrashDetector
from ultrathink.hardening.rate_limit import RateLimitConfig, RateWindow
from ultrathink.testing.engine import engine_for

DATA = "synthetic:n_bars=300,seed=4,freq=1D"


class Scripted(Strategy):
    """Buys on bar 10; calls ``hook(self, bar_index)`` on every bar; records denials."""

    name = "scripted"

    def __init__(self, hook: Callable[[Scripted, int, Bar], None] | None = None) -> None:
        super().__init__()
        self.hook = hook
        self.i = 0
        self.denials: list[OrderDenied] = []

    def on_bar(self, bar: Bar) -> None:
        if self.i == 10:
            self.buy(bar.symbol, 100)
        if self.hook is not None:
            self.hook(self, self.i, bar)
        self.i += 1

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denials.append(denied)


def _engine(strategy: Strategy, data: MarketData, **config: Any) -> Engine:
    return engine_for(strategy, data, EngineConfig(**config), mode="backtest")


def test_operator_kill_halts_cancels_flattens_and_blocks_until_resume() -> None:
    data = load_data(DATA)
    engine_ref: list[Engine] = []

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        kill = engine_ref[0].parts.kill_switch
        if i == 20:
            s.buy(bar.symbol, 10, limit=bar.close * 0.92)  # a working order to cancel
            kill.trigger("operator test", source="operator")
        if i == 25:
            s.buy(bar.symbol, 5)  # must be denied: HALTED
        if i == 30:
            kill.resume("alice", "checked the book")
        if i == 31:
            s.buy(bar.symbol, 5)  # allowed again

    strategy = Scripted(hook)
    engine = _engine(strategy, data)
    engine_ref.append(engine)
    engine.kernel.run(data)

    assert engine.parts.kill_switch.n_triggers == 1
    assert [d.reason for d in strategy.denials] == [DenyReason.TRADING_HALTED]
    assert engine.parts.booker.status_counts[OrderStatus.CANCELLED] == 1
    assert engine.parts.risk.state is TradingState.ACTIVE
    assert engine.parts.portfolio.position("SYN") == 5.0, (
        "flattened at 21, re-entered 5 after resume"
    )


def test_flatten_orders_bypass_halt_and_leave_the_book_flat() -> None:
    data = load_data(DATA)
    engine_ref: list[Engine] = []

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        if i == 40:
            assert engine_ref[0].parts.kill_switch.trigger("flatten now") == 1

    engine = _engine(Scripted(hook), data)
    engine_ref.append(engine)
    engine.kernel.run(data)

    assert engine.parts.kill_switch.verify_flat() == {}
    assert engine.parts.risk.state is TradingState.HALTED


def test_crash_detector_fires_the_kill_switch_once() -> None:
    data = load_data("synthetic:n_bars=300,seed=4,freq=1D,crash=30@150/5")
    kill_config = KillSwitchConfig(crash=CrashConfig(pct=15, n_bars=5))

    result = run(RunSpec(Scripted(), data, EngineConfig(kill_switch=kill_config)))

    assert result.trading_state == "HALTED"
    assert "crash detector" in result.trading_state_reason
    assert result.final_positions == {}, "the position was flattened"


def test_drawdown_breach_fires_the_kill_switch_when_configured() -> None:
    data = load_data("synthetic:n_bars=300,seed=4,freq=1D,crash=30@150/5")
    config: dict[str, Any] = {
        "risk": {"max_drawdown_pct": 5.0},
        "kill_switch": {"on_limit_breach": True},
        "sizing": {"mode": "fixed", "quantity": 900},
    }

    halted = run(RunSpec(Scripted(), data, EngineConfig(**config)))
    reducing = run(RunSpec(Scripted(), data, EngineConfig(**{**config, "kill_switch": {}})))

    assert halted.trading_state == "HALTED" and "MAX_DRAWDOWN" in halted.trading_state_reason
    assert halted.final_positions == {}
    assert reducing.trading_state == "REDUCING", "without the kill switch the limit only reduces"


def test_rate_limit_denies_with_rate_limited_and_never_queues() -> None:
    data = load_data(DATA)

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        if 50 <= i < 53:
            for _ in range(4):
                s.buy(bar.symbol, 1, limit=bar.close * 0.92)

    strategy = Scripted(hook)
    limits = RateLimitConfig(windows=(RateWindow(limit=2, per_s=1.0),))
    engine = _engine(strategy, data, rate_limits=limits)
    engine.kernel.run(data)

    reasons = [d.reason for d in strategy.denials]
    assert reasons == [DenyReason.RATE_LIMITED] * 6, "2 of 4 pass per bar (daily bars refill)"
    assert all("RATE_LIMITED" in d.detail for d in strategy.denials)


def test_kill_switch_cancels_are_not_throttled_by_order_limits() -> None:
    data = load_data(DATA)
    engine_ref: list[Engine] = []

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        if i == 60:
            for _ in range(50):
                s.buy(bar.symbol, 1, limit=bar.close * 0.92)
        if i == 61:
            engine_ref[0].parts.kill_switch.trigger("cancel everything", flatten=False)

    limits = RateLimitConfig(windows=(RateWindow(limit=50, per_s=1.0),))
    engine = _engine(Scripted(hook), data, rate_limits=limits)
    engine_ref.append(engine)
    engine.kernel.run(data)

    assert engine.parts.broker.open_orders() == []
    assert engine.parts.booker.status_counts[OrderStatus.CANCELLED] == 50


def test_a_failing_risk_check_halts_trading_instead_of_crashing() -> None:
    data = load_data(DATA)
    strategy = Scripted()
    engine = _engine(strategy, data)
    risk = engine.parts.risk

    def broken(req: Any) -> None:
        raise RuntimeError("limits table unavailable")

    # a real fault inside the risk component, injected: RiskEngine.check runs, its rules raise
    risk._check = broken  # type: ignore[method-assign]
    engine.kernel.run(data)

    assert risk.state is TradingState.HALTED
    assert "risk check failed" in risk.state_reason
    assert [d.reason for d in strategy.denials] == [DenyReason.TRADING_HALTED]


@pytest.mark.parametrize("n_bars", [1, 3, 10])
def test_crash_detector_matches_a_brute_force_window_max(n_bars: int) -> None:
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(n_bars).normal(0, 0.05, 500)))
    detector = CrashDetector(CrashConfig(pct=8.0, n_bars=n_bars))

    fired = [detector.update("X", float(c)) is not None for c in closes]

    expected = [
        c < max(closes[max(0, i - n_bars + 1) : i + 1]) * 0.92 for i, c in enumerate(closes)
    ]
    assert fired == expected
