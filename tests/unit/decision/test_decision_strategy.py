"""The Strategy base class: parameters, binding, order helpers and indicator registration."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ultrathink.core.enums import OrderType, Side, TimeInForce
from ultrathink.decision import Strategy
from ultrathink.decision.builtin import BuyAndHold, SmaCross
from ultrathink.decision.strategy import IndicatorSet
from ultrathink.engine.config import SizingConfig
from ultrathink.errors import ConfigError, StrategyError
from ultrathink.features.indicators import EMA, SMA
from ultrathink.testing.fakes import FakeContext

TEN_UNITS = SizingConfig(mode="fixed", quantity=10.0)


class Plain(Strategy):
    name = "plain"

    class Params(Strategy.Params):
        window: int = 5
        threshold: float = 0.5


def bound(strategy: Strategy | None = None, **ctx_kw: Any) -> tuple[Strategy, FakeContext]:
    """``strategy`` bound to a context where orders fill at once and the size is 10 units."""
    s = strategy or Plain()
    ctx_kw.setdefault("fill_immediately", True)
    ctx_kw.setdefault("sizing", TEN_UNITS)
    ctx = FakeContext(**ctx_kw)
    s.bind(ctx)
    return s, ctx


# -- parameters ----------------------------------------------------------------------------------


def test_defaults_and_get_params() -> None:
    assert Plain().get_params() == {"window": 5, "threshold": 0.5}
    assert SmaCross().get_params() == {"fast": 10, "slow": 30, "long_short": False}
    assert BuyAndHold().get_params() == {}


def test_unknown_parameter_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        Plain(windw=3)

    message = str(info.value)
    assert "'plain'" in message
    assert "windw" in message
    assert "3" in message


def test_wrong_type_raises_config_error_naming_parameter_and_value() -> None:
    with pytest.raises(ConfigError, match=r"window: .*'abc'"):
        Plain(window="abc")


@pytest.mark.parametrize(("fast", "slow"), [(30, 10), (10, 10)])
def test_sma_cross_fast_not_below_slow_raises_naming_both(fast: int, slow: int) -> None:
    with pytest.raises(ConfigError) as info:
        SmaCross(fast=fast, slow=slow)

    message = str(info.value)
    assert "sma_cross" in message
    assert "fast must be < slow" in message
    assert f"fast={fast}" in message
    assert f"slow={slow}" in message


@pytest.mark.parametrize(("param", "value"), [("fast", 0), ("slow", 1)])
def test_sma_cross_window_bounds(param: str, value: int) -> None:
    with pytest.raises(ConfigError, match=param):
        SmaCross(**{param: value})


def test_config_error_is_not_chained_to_pydantic() -> None:
    with pytest.raises(ConfigError) as info:
        Plain(nope=1)

    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_params_are_frozen() -> None:
    s = Plain()

    with pytest.raises(Exception, match="frozen"):
        s.params.window = 9  # type: ignore[misc]


def test_get_params_set_params_round_trip() -> None:
    original = SmaCross(fast=3, slow=7, long_short=True)

    clone = SmaCross(**original.get_params())

    assert clone.get_params() == original.get_params()
    assert clone.params == original.params


def test_set_params_replaces_given_params_keeps_others_and_returns_self() -> None:
    s = SmaCross(fast=3, slow=7)

    result = s.set_params(slow=20)

    assert result is s
    assert s.get_params() == {"fast": 3, "slow": 20, "long_short": False}


def test_set_params_validates_and_keeps_old_params_on_error() -> None:
    s = SmaCross(fast=3, slow=7)

    with pytest.raises(ConfigError, match="fast must be < slow"):
        s.set_params(fast=8)

    assert s.get_params() == {"fast": 3, "slow": 7, "long_short": False}


# -- binding & state -----------------------------------------------------------------------------


def test_unbound_strategy_raises_strategy_error_naming_it() -> None:
    s = Plain()

    with pytest.raises(StrategyError, match="'plain' is not bound"):
        s.buy("AAA", 1)
    with pytest.raises(StrategyError):
        _ = s.equity


def test_state_reads_go_through_the_context() -> None:
    s, ctx = bound(cash=1_234.0, prices={"AAA": 1_111.0})
    ctx.positions["AAA"] = 4.0  # worth 4_444.0

    assert s.position("AAA") == 4.0
    assert s.cash == 1_234.0
    assert s.equity == 5_678.0
    assert s.order_size("AAA", 10.0) == 10.0


# -- orders --------------------------------------------------------------------------------------


def test_buy_and_sell_send_market_orders_by_default() -> None:
    s, ctx = bound()

    ids = [s.buy("AAA", 3), s.sell("BBB", 2)]

    assert ids == [x.client_order_id for x in ctx.submits] == ["O-000000001", "O-000000002"]
    assert [(x.symbol, x.side, x.quantity) for x in ctx.submits] == [
        ("AAA", Side.BUY, 3),
        ("BBB", Side.SELL, 2),
    ]
    first = ctx.submits[0]
    assert first.order_type is OrderType.MARKET
    assert (first.limit_price, first.stop_price) == (None, None)
    assert (first.tif, first.reduce_only, first.tag) == (TimeInForce.GTC, False, "")


def test_limit_and_stop_kwargs_choose_the_order_type() -> None:
    s, ctx = bound()

    s.buy("AAA", 1, limit=99.5, tif=TimeInForce.DAY, tag="entry")
    s.sell("AAA", 1, stop=95.0, reduce_only=True)

    limit, stop = ctx.submits
    assert (limit.order_type, limit.limit_price, limit.tif, limit.tag) == (
        OrderType.LIMIT,
        99.5,
        TimeInForce.DAY,
        "entry",
    )
    assert (stop.order_type, stop.stop_price, stop.reduce_only) == (
        OrderType.STOP,
        95.0,
        True,
    )


def test_limit_and_stop_together_raise() -> None:
    s, ctx = bound()

    with pytest.raises(StrategyError, match="limit= or stop="):
        s.buy("AAA", 1, limit=1.0, stop=2.0)
    assert ctx.submits == []


@pytest.mark.parametrize(
    ("position", "pending", "target", "expected"),
    [
        (0.0, 0.0, 10.0, (Side.BUY, 10.0)),
        (4.0, 0.0, 10.0, (Side.BUY, 6.0)),
        (4.0, 3.0, 10.0, (Side.BUY, 3.0)),
        (10.0, 0.0, 0.0, (Side.SELL, 10.0)),
        (10.0, 0.0, -5.0, (Side.SELL, 15.0)),
        (-5.0, -2.0, 0.0, (Side.BUY, 7.0)),
    ],
)
def test_target_position_trades_the_difference_including_pending(
    position: float, pending: float, target: float, expected: tuple[Side, float]
) -> None:
    s, ctx = bound()
    ctx.positions["AAA"], ctx.pending["AAA"] = position, pending

    coid = s.target_position("AAA", target, tag="t")

    [sub] = ctx.submits
    assert (sub.side, sub.quantity) == expected
    assert sub.order_type is OrderType.MARKET
    assert sub.tag == "t"
    assert coid == sub.client_order_id


@pytest.mark.parametrize(
    ("position", "pending", "target", "affordable", "expected"),
    [
        (0.0, 0.0, 10.0, 4.0, 4.0),  # cash covers 4 of 10
        (4.0, 3.0, 10.0, 1.0, 1.0),  # asked from position + pending = 7
        (-5.0, 0.0, 10.0, 7.0, 7.0),  # the context decides what a short cover costs
        (0.0, 0.0, 10.0, 10.0, 10.0),  # everything affordable: the full difference
    ],
)
def test_target_position_caps_a_buy_at_what_cash_covers(
    position: float, pending: float, target: float, affordable: float, expected: float
) -> None:
    s, ctx = bound(affordable=affordable)
    ctx.positions["AAA"], ctx.pending["AAA"] = position, pending

    s.target_position("AAA", target)

    assert ctx.affordability_asked == [("AAA", position + pending, target - position - pending)]
    [sub] = ctx.submits
    assert (sub.side, sub.quantity) == (Side.BUY, expected)


def test_target_position_sends_nothing_when_no_unit_is_affordable() -> None:
    s, ctx = bound(affordable=0.0)

    assert s.target_position("AAA", 10.0) is None
    assert ctx.submits == []
    assert ctx.affordability_asked == [("AAA", 0.0, 10.0)]


def test_target_position_never_asks_about_sells() -> None:
    s, ctx = bound(affordable=0.0)
    ctx.positions["AAA"] = 10.0

    s.target_position("AAA", -5.0)

    assert ctx.affordability_asked == []
    assert [(x.side, x.quantity) for x in ctx.submits] == [(Side.SELL, 15.0)]


def test_buy_and_sell_helpers_are_not_capped() -> None:
    # only target_position sizes against cash; an explicit buy is the strategy's own call
    s, ctx = bound(affordable=0.0)

    s.buy("AAA", 3)

    assert [x.quantity for x in ctx.submits] == [3]
    assert ctx.affordability_asked == []


def test_target_position_already_reached_sends_nothing() -> None:
    s, ctx = bound()
    ctx.positions["AAA"], ctx.pending["AAA"] = 6.0, 4.0

    assert s.target_position("AAA", 10.0) is None
    assert s.target_position("AAA", 10.0 + 1e-12) is None
    assert ctx.submits == []


def test_cancel_and_cancel_all_delegate_to_the_context() -> None:
    s, ctx = bound(fill_immediately=False)
    first = s.buy("AAA", 1)
    for symbol in ("AAA", "AAA", "BBB"):
        s.buy(symbol, 1)

    assert s.cancel(first) is True
    assert s.cancel_all("AAA") == 2
    assert s.cancel_all() == 1
    assert ctx.cancels == [first, "all:AAA", "all:None"]


# -- indicators ----------------------------------------------------------------------------------


def test_sma_and_ema_register_per_symbol_indicators() -> None:
    s = Plain()

    fast, slow = s.sma(2), s.ema(3)

    assert s.indicators == [fast, slow]
    assert isinstance(fast.for_symbol("AAA"), SMA)
    assert isinstance(slow.for_symbol("AAA"), EMA)
    assert fast.for_symbol("AAA") is fast.for_symbol("AAA")
    assert fast.for_symbol("AAA") is not fast.for_symbol("BBB")


def test_indicator_set_values_are_per_symbol_and_nan_until_ready() -> None:
    ind = IndicatorSet(lambda: SMA(2))

    ind.update("AAA", 1.0)
    assert math.isnan(ind["AAA"])
    assert math.isnan(ind["UNSEEN"])
    assert not ind.ready("AAA")
    assert not ind.ready("UNSEEN")
    ind.update("AAA", 3.0)
    ind.update("BBB", 10.0)

    assert ind["AAA"] == 2.0
    assert ind.ready("AAA")
    assert math.isnan(ind["BBB"])


def test_default_hooks_do_nothing() -> None:
    s, ctx = bound()

    s.on_start()
    s.on_stop()

    assert ctx.submits == []
