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
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.runner import RunSpec, build_kernel, run
from ultrathink.hardening.crash import CrashConfig, CrashDetector
from ultrathink.hardening.rate_limit import RateLimitConfig, RateWindow

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


def _kernel(strategy: Strategy, data: MarketData, **config: Any) -> Any:
    spec = RunSpec(strategy, data, EngineConfig(**config))
    return build_kernel(spec, Recorder(None, spec.config.starting_cash))


def test_operator_kill_halts_cancels_flattens_and_blocks_until_resume() -> None:
    data = load_data(DATA)
    kernel_ref: list[Any] = []

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        kill = kernel_ref[0].kill_switch
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
    kernel = _kernel(strategy, data)
    kernel_ref.append(kernel)
    kernel.run(data)

    assert kernel.kill_switch.n_triggers == 1
    assert [d.reason for d in strategy.denials] == [DenyReason.TRADING_HALTED]
    assert kernel.ctx.status_counts[OrderStatus.CANCELLED] == 1
    assert kernel.risk.state is TradingState.ACTIVE
    assert kernel.portfolio.position("SYN") == 5.0, "flattened at 21, re-entered 5 after resume"


def test_flatten_orders_bypass_halt_and_leave_the_book_flat() -> None:
    data = load_data(DATA)
    kernel_ref: list[Any] = []

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        if i == 40:
            assert kernel_ref[0].kill_switch.trigger("flatten now") == 1

    kernel = _kernel(Scripted(hook), data)
    kernel_ref.append(kernel)
    kernel.run(data)

    assert kernel.kill_switch.verify_flat() == {}
    assert kernel.risk.state is TradingState.HALTED


def test_crash_detector_fires_the_kill_switch_once() -> None:
    data = load_data("synthetic:n_bars=300,seed=4,freq=1D,crash=30@150/5")
    kill_config = KillSwitchConfig(crash=CrashConfig(pct=15, n_bars=5))

    result = run(RunSpec(Scripted(), data, EngineConfig(kill_switch=kill_config)))

    assert result.trading_state == "HALTED"
    assert "crash detector" in result.trading_state_reason
    assert result.final_positions == {}, "the position was flattened"


def test_drawdown_breach_fires_the_kill_switch_when_configured() -> None:
    data = load_data("synthetic:n_bars=300,seed=4,freq=1D,crash=30@150/5")
    config = {
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
    kernel = _kernel(strategy, data, rate_limits=limits)
    kernel.run(data)

    reasons = [d.reason for d in strategy.denials]
    assert reasons == [DenyReason.RATE_LIMITED] * 6, "2 of 4 pass per bar (daily bars refill)"
    assert all("RATE_LIMITED" in d.detail for d in strategy.denials)


def test_kill_switch_cancels_are_not_throttled_by_order_limits() -> None:
    data = load_data(DATA)
    kernel_ref: list[Any] = []

    def hook(s: Scripted, i: int, bar: Bar) -> None:
        if i == 60:
            for _ in range(50):
                s.buy(bar.symbol, 1, limit=bar.close * 0.92)
        if i == 61:
            kernel_ref[0].kill_switch.trigger("cancel everything", flatten=False)

    limits = RateLimitConfig(windows=(RateWindow(limit=50, per_s=1.0),))
    kernel = _kernel(Scripted(hook), data, rate_limits=limits)
    kernel_ref.append(kernel)
    kernel.run(data)

    assert kernel.broker.open_orders() == []
    assert kernel.ctx.status_counts[OrderStatus.CANCELLED] == 50


def test_a_failing_risk_check_halts_trading_instead_of_crashing() -> None:
    data = load_data(DATA)
    strategy = Scripted()
    kernel = _kernel(strategy, data)

    def broken(req: Any) -> None:
        raise RuntimeError("limits table unavailable")

    kernel.risk.check = broken  # a real fault in the risk component, injected
    kernel.run(data)

    assert kernel.risk.state is TradingState.HALTED
    assert "risk check failed" in kernel.risk.state_reason
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
