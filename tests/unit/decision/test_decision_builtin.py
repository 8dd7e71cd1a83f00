"""Built-in strategies driven by the shared ``FakeContext``, as the kernel would drive them."""

from __future__ import annotations

from typing import Any

from ultrathink.core.clock import TestClock
from ultrathink.core.enums import OrderType, Side
from ultrathink.core.events import Bar
from ultrathink.decision import Strategy
from ultrathink.decision.builtin import BUILTIN_STRATEGIES, BuyAndHold, SmaCross
from ultrathink.engine.config import SizingConfig
from ultrathink.testing.fakes import FakeContext

# fast(2) - slow(3) of these closes: n/a, n/a, -.5, -.5, -.17, +.5, +.5, +.5, +.17, -.5, -.5, -.5
# so the fast average crosses above at index 5 and below at index 9
CROSSING_CLOSES = [10.0, 9.0, 8.0, 7.0, 8.0, 9.0, 10.0, 11.0, 10.0, 9.0, 8.0, 7.0]


def run(strategy: Strategy, bars: list[tuple[str, float]], **ctx_kw: Any) -> FakeContext:
    """Bind, start, then per bar update indicators and call on_bar (the kernel's order).

    Orders fill as they are submitted; each request is stamped with its bar's index. The
    context sizes 10 units unless ``sizing`` says otherwise.
    """
    clock = TestClock(0)
    ctx_kw.setdefault("sizing", fixed(10.0))
    ctx = FakeContext(fill_immediately=True, clock=clock, **ctx_kw)
    strategy.bind(ctx)
    strategy.on_start()
    for i, (symbol, close) in enumerate(bars):
        clock.set_ns(i)
        for ind in strategy.indicators:
            ind.update(symbol, close)
        strategy.on_bar(Bar(i, symbol, close, close, close, close, 1.0))
    strategy.on_stop()
    return ctx


def fixed(quantity: float) -> SizingConfig:
    return SizingConfig(mode="fixed", quantity=quantity)


def orders(ctx: FakeContext) -> list[tuple[int, str, Side, float]]:
    """``(bar index, symbol, side, quantity)`` of every order: market orders, all of them."""
    assert all(r.order_type is OrderType.MARKET for r in ctx.submits)
    return [(r.ts_ns, r.symbol, r.side, r.quantity) for r in ctx.submits]


def one_symbol(closes: list[float], symbol: str = "AAA") -> list[tuple[str, float]]:
    return [(symbol, c) for c in closes]


def test_builtin_registry() -> None:
    assert {"sma_cross": SmaCross, "buy_and_hold": BuyAndHold} == BUILTIN_STRATEGIES


def test_sma_cross_goes_long_on_cross_up_and_flat_on_cross_down() -> None:
    ctx = run(SmaCross(fast=2, slow=3), one_symbol(CROSSING_CLOSES))

    assert orders(ctx) == [(5, "AAA", Side.BUY, 10.0), (9, "AAA", Side.SELL, 10.0)]
    assert ctx.positions["AAA"] == 0.0


def test_sma_cross_long_short_reverses_on_cross_down() -> None:
    ctx = run(SmaCross(fast=2, slow=3, long_short=True), one_symbol(CROSSING_CLOSES))

    assert orders(ctx) == [(5, "AAA", Side.BUY, 10.0), (9, "AAA", Side.SELL, 20.0)]
    assert ctx.positions["AAA"] == -10.0


def test_sma_cross_does_not_trade_when_fast_starts_above_and_stays_above() -> None:
    ctx = run(SmaCross(fast=2, slow=3), one_symbol([float(c) for c in range(1, 30)]))

    assert orders(ctx) == []


def test_sma_cross_does_not_trade_when_fast_starts_below_and_stays_below() -> None:
    ctx = run(SmaCross(fast=2, slow=3), one_symbol([float(c) for c in range(30, 1, -1)]))

    assert orders(ctx) == []


def test_sma_cross_does_not_trade_while_warming_up() -> None:
    # a cross inside the first `slow` bars is not a signal: there is no previous difference
    ctx = run(SmaCross(fast=2, slow=3), one_symbol([10.0, 9.0, 12.0]))

    assert orders(ctx) == []


def test_sma_cross_tracks_each_symbol_separately() -> None:
    rising = [float(c) for c in range(1, 13)]
    pairs = zip(one_symbol(CROSSING_CLOSES), one_symbol(rising, "BBB"), strict=True)
    bars = [bar for pair in pairs for bar in pair]

    ctx = run(SmaCross(fast=2, slow=3), bars)

    assert [(s, side) for _, s, side, _ in orders(ctx)] == [("AAA", Side.BUY), ("AAA", Side.SELL)]
    assert [i for i, *_ in orders(ctx)] == [10, 18]  # interleaved indices of AAA's bars 5 and 9


def test_sma_cross_repeated_cross_up_does_not_add_to_the_position() -> None:
    # up-cross, down-cross, up-cross: the position goes 10, 0, 10, never 20
    ctx = run(SmaCross(fast=2, slow=3), one_symbol([*CROSSING_CLOSES[:10], 12.0, 14.0, 16.0]))

    assert [(i, side) for i, _, side, _ in orders(ctx)] == [
        (5, Side.BUY),
        (9, Side.SELL),
        (10, Side.BUY),
    ]
    assert ctx.positions["AAA"] == 10.0


def test_buy_and_hold_buys_once_per_symbol() -> None:
    bars = [("AAA", 10.0), ("BBB", 20.0), ("AAA", 11.0), ("BBB", 19.0), ("AAA", 5.0)]

    ctx = run(BuyAndHold(), bars, sizing=fixed(7.0))

    assert orders(ctx) == [(0, "AAA", Side.BUY, 7.0), (1, "BBB", Side.BUY, 7.0)]


def test_buy_and_hold_with_zero_size_sends_nothing() -> None:
    # all-in of no equity: a size of 0 units
    ctx = run(BuyAndHold(), [("AAA", 10.0), ("AAA", 11.0)], sizing=SizingConfig(), cash=0.0)

    assert orders(ctx) == []


def test_restart_resets_strategy_state() -> None:
    strategy = BuyAndHold()
    run(strategy, [("AAA", 10.0)])

    ctx = run(strategy, [("AAA", 10.0)])  # on_start again: a fresh run buys again

    assert orders(ctx) == [(0, "AAA", Side.BUY, 10.0)]


def test_sma_cross_enters_with_what_cash_covers() -> None:
    ctx = run(SmaCross(fast=2, slow=3), one_symbol(CROSSING_CLOSES), affordable=6.0)

    assert orders(ctx) == [(5, "AAA", Side.BUY, 6.0), (9, "AAA", Side.SELL, 6.0)]
    assert ctx.positions["AAA"] == 0.0


def test_buy_and_hold_with_nothing_affordable_sends_nothing() -> None:
    ctx = run(BuyAndHold(), [("AAA", 10.0), ("AAA", 11.0)], affordable=0.0)

    assert orders(ctx) == []
