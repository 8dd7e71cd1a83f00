"""RiskEngine: every reason code, trading states, pending-order projections, equity breaches."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ultrathink.core.enums import DenyReason, OrderType, Side, TradingState
from ultrathink.core.events import OrderDenied, OrderRequest
from ultrathink.risk.config import RiskConfig
from ultrathink.risk.engine import RiskEngine

DAY_NS = 86_400_000_000_000
HOUR_NS = 3_600_000_000_000
R = DenyReason


class FakeAccount:
    """A real AccountView: cash, signed positions and last prices."""

    def __init__(
        self,
        cash: float = 100_000.0,
        prices: dict[str, float] | None = None,
        positions: dict[str, float] | None = None,
    ) -> None:
        self.cash = cash
        self.prices = {"AAA": 100.0, "BBB": 50.0} if prices is None else prices
        self.positions = positions or {}

    def position(self, symbol: str) -> float:
        return self.positions.get(symbol, 0.0)

    def last_price(self, symbol: str) -> float | None:
        return self.prices.get(symbol)

    def equity(self) -> float:
        return self.cash + sum(q * self.prices[s] for s, q in self.positions.items())

    def gross_exposure(self) -> float:
        return sum(abs(q * self.prices[s]) for s, q in self.positions.items())


class FakeOrders:
    """A real OrdersView: signed pending quantity per symbol and a working-order count."""

    def __init__(
        self,
        pending: dict[str, float] | None = None,
        n_open: int = 0,
        prices: dict[str, float] | None = None,
    ) -> None:
        self.pending = pending or {}
        self.n_open = n_open
        self.prices = {"AAA": 100.0, "BBB": 50.0} if prices is None else prices

    def pending_qty(self, symbol: str) -> float:
        return self.pending.get(symbol, 0.0)

    def n_open_orders(self) -> int:
        return self.n_open

    def pending_buy_notional(self) -> float:
        return sum(q * self.prices[s] for s, q in self.pending.items() if q > 0)

    def pending_gross_notional(self, exclude_symbol: str) -> float:
        return sum(abs(q) * self.prices[s] for s, q in self.pending.items() if s != exclude_symbol)


def limits(**overrides: object) -> RiskConfig:
    """A config with every check off, then ``overrides`` switched on."""
    base: dict[str, object] = {
        "max_gross_exposure_pct": None,
        "price_band_pct": None,
        "max_open_orders": None,
        "check_buying_power": False,
    }
    return RiskConfig(**{**base, **overrides})


def make_engine(
    config: RiskConfig | None = None,
    account: FakeAccount | None = None,
    orders: FakeOrders | None = None,
    **kw: Any,
) -> RiskEngine:
    return RiskEngine(
        config if config is not None else limits(),
        account if account is not None else FakeAccount(),
        orders if orders is not None else FakeOrders(),
        **kw,
    )


def req(
    side: Side = Side.BUY,
    quantity: float = 10.0,
    symbol: str = "AAA",
    order_type: OrderType = OrderType.MARKET,
    limit: float | None = None,
    stop: float | None = None,
    reduce_only: bool = False,
    ts_ns: int = 123,
) -> OrderRequest:
    return OrderRequest(
        "O-1", ts_ns, symbol, side, quantity, order_type, limit, stop, reduce_only=reduce_only
    )


def denied(engine: RiskEngine, request: OrderRequest) -> OrderDenied:
    result = engine.check(request)
    assert result is not None, "expected a denial, got an approval"
    return result


# -- basics --------------------------------------------------------------------------------------


def test_order_within_all_limits_is_approved_and_counted() -> None:
    engine = make_engine(RiskConfig())

    assert engine.check(req()) is None
    assert (engine.n_approved, engine.n_denied) == (1, 0)


def test_denial_is_an_event_naming_the_request() -> None:
    engine = make_engine()
    engine.set_state(TradingState.HALTED, "kill switch")

    result = denied(engine, req(ts_ns=777, symbol="BBB"))

    assert isinstance(result, OrderDenied)
    assert (result.ts_ns, result.client_order_id, result.symbol) == (777, "O-1", "BBB")
    assert (engine.n_approved, engine.n_denied) == (0, 1)


def test_engine_starts_active() -> None:
    engine = make_engine()

    assert engine.state is TradingState.ACTIVE
    assert engine.state_reason == ""


# -- one test per reason code --------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        req(),
        req(Side.SELL, reduce_only=True),
        req(quantity=0.0),
        req(symbol="UNKNOWN"),
    ],
)
def test_halted_denies_everything(request_: OrderRequest) -> None:
    account = FakeAccount(positions={"AAA": 100.0})
    engine = make_engine(account=account)
    engine.set_state(TradingState.HALTED, "kill switch pressed")

    result = denied(engine, request_)

    assert result.reason is R.TRADING_HALTED
    assert "HALTED" in result.detail
    assert "kill switch pressed" in result.detail


@pytest.mark.parametrize("quantity", [0.0, -5.0, math.nan])
def test_invalid_quantity(quantity: float) -> None:
    result = denied(make_engine(), req(quantity=quantity))

    assert result.reason is R.INVALID_ORDER
    assert "quantity must be > 0" in result.detail
    assert str(quantity) in result.detail


def test_no_market_data() -> None:
    result = denied(make_engine(), req(symbol="ZZZ"))

    assert result.reason is R.NO_MARKET_DATA
    assert "ZZZ" in result.detail


def test_reduce_only_order_that_would_open_a_position() -> None:
    result = denied(make_engine(), req(Side.BUY, reduce_only=True))

    assert result.reason is R.REDUCE_ONLY
    assert "reduce_only" in result.detail


def test_reduce_only_order_that_would_flip_the_position() -> None:
    engine = make_engine(account=FakeAccount(positions={"AAA": 10.0}))

    result = denied(engine, req(Side.SELL, quantity=15.0, reduce_only=True))

    assert result.reason is R.REDUCE_ONLY


@pytest.mark.parametrize(("position", "side"), [(10.0, Side.SELL), (-10.0, Side.BUY)])
@pytest.mark.parametrize("quantity", [4.0, 10.0])
def test_reduce_only_order_that_reduces_passes(
    position: float, side: Side, quantity: float
) -> None:
    engine = make_engine(account=FakeAccount(positions={"AAA": position}))

    assert engine.check(req(side, quantity=quantity, reduce_only=True)) is None


def test_reduce_only_counts_pending_orders() -> None:
    # long 10 with 8 already being sold: selling 5 more would end short 3
    engine = make_engine(
        account=FakeAccount(positions={"AAA": 10.0}), orders=FakeOrders(pending={"AAA": -8.0})
    )

    assert denied(engine, req(Side.SELL, quantity=5.0, reduce_only=True)).reason is R.REDUCE_ONLY
    assert engine.check(req(Side.SELL, quantity=2.0, reduce_only=True)) is None


def test_max_open_orders() -> None:
    engine = make_engine(limits(max_open_orders=3), orders=FakeOrders(n_open=3))

    result = denied(engine, req())

    assert result.reason is R.MAX_OPEN_ORDERS
    assert "3 orders already working" in result.detail


def test_max_open_orders_allows_below_limit() -> None:
    engine = make_engine(limits(max_open_orders=3), orders=FakeOrders(n_open=2))

    assert engine.check(req()) is None


@pytest.mark.parametrize(
    ("order_type", "limit", "stop", "off_pct"),
    [
        (OrderType.LIMIT, 85.0, None, "15.00"),
        (OrderType.LIMIT, 111.0, None, "11.00"),
    ],
)
def test_price_band(
    order_type: OrderType, limit: float | None, stop: float | None, off_pct: str
) -> None:
    engine = make_engine(limits(price_band_pct=10.0))

    result = denied(engine, req(order_type=order_type, limit=limit, stop=stop))

    assert result.reason is R.PRICE_BAND
    assert order_type.value in result.detail
    assert f"{off_pct}%" in result.detail
    assert "last 100.0" in result.detail
    assert "price_band_pct is 10.0" in result.detail


@pytest.mark.parametrize(
    ("order_type", "limit", "stop"),
    [
        (OrderType.LIMIT, 90.0, None),
        (OrderType.LIMIT, 109.9, None),
        (OrderType.STOP, None, 109.9),
        (OrderType.MARKET, None, None),
    ],
)
def test_price_band_allows_prices_inside_the_band(
    order_type: OrderType, limit: float | None, stop: float | None
) -> None:
    engine = make_engine(limits(price_band_pct=10.0))

    assert engine.check(req(order_type=order_type, limit=limit, stop=stop)) is None


@pytest.mark.parametrize(
    ("side", "stop", "position"),
    [
        (Side.SELL, 80.0, 10.0),  # a protective stop 20 % under a long
        (Side.BUY, 120.0, -10.0),  # a protective stop 20 % over a short
        (Side.BUY, 120.0, 0.0),  # a breakout entry 20 % over the market
        (Side.SELL, 50.0, 0.0),  # a breakdown entry 50 % under it
    ],
)
def test_a_stop_price_is_never_banded(side: Side, stop: float, position: float) -> None:
    engine = make_engine(
        limits(price_band_pct=10.0), account=FakeAccount(positions={"AAA": position})
    )

    assert engine.check(req(side, order_type=OrderType.STOP, stop=stop)) is None


def test_a_protective_stop_20pct_away_is_approved_on_every_bar() -> None:
    # regression: it used to be denied PRICE_BAND each time the strategy re-sent it
    account = FakeAccount(positions={"AAA": 10.0})
    engine = make_engine(RiskConfig(price_band_pct=10.0), account=account)
    stop = req(Side.SELL, order_type=OrderType.STOP, stop=80.0, reduce_only=True)

    results = []
    for close in (100.0, 101.0, 99.0, 102.0):
        account.prices["AAA"] = close
        results.append(engine.check(stop))

    assert results == [None] * 4
    assert (engine.n_approved, engine.n_denied) == (4, 0)


def test_a_stop_is_valued_at_its_trigger_price() -> None:
    engine = make_engine(limits(price_band_pct=10.0, max_order_notional=1_000.0))

    result = denied(engine, req(quantity=10.0, order_type=OrderType.STOP, stop=120.0))

    assert result.reason is R.MAX_ORDER_NOTIONAL  # not PRICE_BAND
    assert "1,200.00" in result.detail


def test_max_order_notional_uses_limit_price_as_reference() -> None:
    engine = make_engine(limits(max_order_notional=1_000.0))

    assert engine.check(req(quantity=10.0)) is None  # 10 x 100 = 1,000
    result = denied(engine, req(quantity=10.0, order_type=OrderType.LIMIT, limit=105.0))

    assert result.reason is R.MAX_ORDER_NOTIONAL
    assert "1,050.00" in result.detail
    assert "max_order_notional 1,000.00" in result.detail


def test_max_order_notional_applies_to_reducing_orders_too() -> None:
    engine = make_engine(
        limits(max_order_notional=1_000.0), account=FakeAccount(positions={"AAA": 50.0})
    )

    assert denied(engine, req(Side.SELL, quantity=20.0)).reason is R.MAX_ORDER_NOTIONAL


@pytest.mark.parametrize(("side", "expected_after"), [(Side.BUY, "60"), (Side.SELL, "-60")])
def test_max_position_qty(side: Side, expected_after: str) -> None:
    position = 50.0 if side is Side.BUY else -50.0
    engine = make_engine(
        limits(max_position_qty=55.0), account=FakeAccount(positions={"AAA": position})
    )

    result = denied(engine, req(side, quantity=10.0))

    assert result.reason is R.MAX_POSITION
    assert f"position {expected_after} AAA" in result.detail
    assert "max_position_qty 55" in result.detail


def test_max_position_notional() -> None:
    engine = make_engine(limits(max_position_notional=5_000.0))

    assert engine.check(req(quantity=50.0)) is None
    result = denied(engine, req(quantity=51.0))

    assert result.reason is R.MAX_POSITION
    assert "5,100.00" in result.detail
    assert "max_position_notional 5,000.00" in result.detail


def test_max_position_includes_pending_orders() -> None:
    engine = make_engine(
        limits(max_position_qty=50.0),
        account=FakeAccount(positions={"AAA": 30.0}),
        orders=FakeOrders(pending={"AAA": 15.0}),
    )

    assert engine.check(req(quantity=5.0)) is None
    assert denied(engine, req(quantity=6.0)).reason is R.MAX_POSITION


def test_max_position_counts_only_the_orders_symbol() -> None:
    engine = make_engine(
        limits(max_position_qty=50.0),
        account=FakeAccount(positions={"BBB": 1_000.0}),
        orders=FakeOrders(pending={"BBB": 1_000.0}),
    )

    assert engine.check(req(quantity=50.0, symbol="AAA")) is None


def test_reducing_order_passes_even_when_position_is_over_the_limit() -> None:
    engine = make_engine(
        limits(max_position_qty=50.0, max_gross_exposure_pct=1.0, check_buying_power=True),
        account=FakeAccount(positions={"AAA": 100.0}),
    )

    assert engine.check(req(Side.SELL, quantity=10.0)) is None
    assert denied(engine, req(Side.BUY, quantity=1.0)).reason is R.MAX_POSITION


def test_max_gross_exposure() -> None:
    # equity 10,000 cash; 100 % of equity = 10,000
    account = FakeAccount(cash=10_000.0)
    engine = make_engine(limits(max_gross_exposure_pct=100.0), account=account)

    assert engine.check(req(quantity=100.0)) is None  # exactly 10,000
    result = denied(engine, req(quantity=101.0))

    assert result.reason is R.MAX_GROSS_EXPOSURE
    assert "gross exposure 10,100.00" in result.detail
    assert "100.0% of equity 10,000.00" in result.detail


def test_gross_exposure_adds_other_symbols_positions() -> None:
    # cash 5,000 + 100 BBB x 50 = equity 10,000; gross already 5,000
    account = FakeAccount(cash=5_000.0, positions={"BBB": 100.0})
    engine = make_engine(limits(max_gross_exposure_pct=100.0), account=account)

    assert engine.check(req(quantity=50.0)) is None
    assert denied(engine, req(quantity=51.0)).reason is R.MAX_GROSS_EXPOSURE


def test_gross_exposure_includes_pending_orders_of_the_symbol() -> None:
    account = FakeAccount(cash=10_000.0)
    engine = make_engine(
        limits(max_gross_exposure_pct=100.0), account=account, orders=FakeOrders({"AAA": 80.0})
    )

    assert engine.check(req(quantity=20.0)) is None
    assert denied(engine, req(quantity=21.0)).reason is R.MAX_GROSS_EXPOSURE


def test_gross_exposure_counts_a_short_as_exposure() -> None:
    account = FakeAccount(cash=10_000.0)
    engine = make_engine(limits(max_gross_exposure_pct=100.0), account=account)

    assert denied(engine, req(Side.SELL, quantity=101.0)).reason is R.MAX_GROSS_EXPOSURE


def test_insufficient_buying_power() -> None:
    engine = make_engine(limits(check_buying_power=True), account=FakeAccount(cash=1_000.0))

    assert engine.check(req(quantity=10.0)) is None  # exactly 1,000
    result = denied(engine, req(quantity=11.0))

    assert result.reason is R.INSUFFICIENT_BUYING_POWER
    assert "buy of 1,100.00" in result.detail
    assert "exceeds available cash 1,000.00" in result.detail


def test_buying_power_includes_the_fee_estimate() -> None:
    engine = make_engine(
        limits(check_buying_power=True, fee_estimate_bps=10.0), account=FakeAccount(cash=1_000.0)
    )

    assert denied(engine, req(quantity=10.0)).reason is R.INSUFFICIENT_BUYING_POWER
    assert engine.check(req(quantity=9.0)) is None


def test_buying_power_includes_the_fixed_fee_estimate() -> None:
    engine = make_engine(
        limits(check_buying_power=True),
        account=FakeAccount(cash=1_000.0),
        fixed_fee_estimate=1.0,
    )

    result = denied(engine, req(quantity=10.0))  # 1,000 + 1 > 1,000

    assert result.reason is R.INSUFFICIENT_BUYING_POWER
    assert "buy of 1,000.00 (+1.00 est. costs) exceeds available cash 1,000.00" in result.detail
    assert engine.check(req(quantity=9.0)) is None  # 900 + 1


def test_buying_power_adds_the_fixed_fee_to_the_proportional_estimate() -> None:
    # 9 x 100 x 1.001 + 1.10 = 902.00 exactly
    engine = make_engine(
        limits(check_buying_power=True, fee_estimate_bps=10.0),
        account=FakeAccount(cash=902.0),
        fixed_fee_estimate=1.1,
    )
    assert engine.check(req(quantity=9.0)) is None

    poorer = make_engine(
        limits(check_buying_power=True, fee_estimate_bps=10.0),
        account=FakeAccount(cash=901.99),
        fixed_fee_estimate=1.1,
    )
    result = denied(poorer, req(quantity=9.0))
    assert "(+2.00 est. costs)" in result.detail


def test_the_fixed_fee_does_not_apply_to_sells_or_short_covers() -> None:
    engine = make_engine(
        limits(check_buying_power=True),
        account=FakeAccount(cash=0.0, positions={"AAA": -20.0}),
        fixed_fee_estimate=5.0,
    )

    assert engine.check(req(Side.BUY, quantity=20.0)) is None  # covers the short exactly
    assert engine.check(req(Side.SELL, quantity=10.0)) is None


def test_buying_power_does_not_apply_to_sells_or_short_covers() -> None:
    engine = make_engine(
        limits(check_buying_power=True),
        account=FakeAccount(cash=0.0, positions={"AAA": -20.0}),
    )

    assert engine.check(req(Side.BUY, quantity=10.0)) is None  # covers part of the short
    assert engine.check(req(Side.SELL, quantity=10.0)) is None  # adds to the short


def test_buying_power_checks_a_buy_that_flips_a_short_to_long() -> None:
    engine = make_engine(
        limits(check_buying_power=True),
        account=FakeAccount(cash=1_000.0, positions={"AAA": -5.0}),
    )

    assert denied(engine, req(Side.BUY, quantity=20.0)).reason is R.INSUFFICIENT_BUYING_POWER


def test_check_buying_power_false_switches_the_check_off() -> None:
    engine = make_engine(limits(check_buying_power=False), account=FakeAccount(cash=0.0))

    assert engine.check(req(quantity=1_000.0)) is None


def test_checks_run_in_the_documented_order() -> None:
    # breaks open orders, price band, notional, position and buying power at once
    config = limits(
        max_open_orders=1,
        price_band_pct=1.0,
        max_order_notional=1.0,
        max_position_qty=1.0,
        check_buying_power=True,
    )
    account = FakeAccount(cash=0.0)
    request = req(quantity=100.0, order_type=OrderType.LIMIT, limit=150.0)

    first = denied(make_engine(config, account, FakeOrders(n_open=1)), request)
    second = denied(make_engine(config, account), request)
    third = denied(make_engine(config, account), request._replace(limit_price=100.0))

    assert [first.reason, second.reason, third.reason] == [
        R.MAX_OPEN_ORDERS,
        R.PRICE_BAND,
        R.MAX_ORDER_NOTIONAL,
    ]


# -- trading state -------------------------------------------------------------------------------


def test_reducing_state_lets_reducing_orders_through_and_denies_increasing_ones() -> None:
    engine = make_engine(account=FakeAccount(positions={"AAA": 10.0}))
    engine.set_state(TradingState.REDUCING, "operator: wind down")

    assert engine.check(req(Side.SELL, quantity=5.0)) is None
    assert engine.check(req(Side.SELL, quantity=10.0)) is None
    increase = denied(engine, req(Side.BUY, quantity=1.0))
    flip = denied(engine, req(Side.SELL, quantity=11.0))
    new_symbol = denied(engine, req(Side.BUY, quantity=1.0, symbol="BBB"))

    for result in (increase, flip, new_symbol):
        assert result.reason is R.REDUCE_ONLY
        assert "REDUCING" in result.detail
        assert "operator: wind down" in result.detail


def test_set_state_back_to_active_allows_increases_again() -> None:
    engine = make_engine()
    engine.set_state(TradingState.REDUCING, "manual")
    assert engine.check(req()) is not None

    engine.set_state(TradingState.ACTIVE, "resumed")

    assert engine.check(req()) is None
    assert engine.state_reason == "resumed"


def test_drawdown_breach_switches_to_reducing_with_max_drawdown_reason() -> None:
    account = FakeAccount(positions={"AAA": 10.0})
    engine = make_engine(limits(max_drawdown_pct=10.0), account=account)
    engine.on_equity(0, 100_000.0)
    engine.on_equity(HOUR_NS, 120_000.0)  # new peak
    engine.on_equity(2 * HOUR_NS, 109_000.0)  # 9.2 % below the peak: fine
    assert engine.state is TradingState.ACTIVE

    engine.on_equity(3 * HOUR_NS, 107_000.0)  # 10.8 % below the peak

    assert engine.state is TradingState.REDUCING
    assert engine.peak_equity == 120_000.0
    assert "drawdown 10.83%" in engine.state_reason
    assert "max_drawdown_pct 10.0" in engine.state_reason
    result = denied(engine, req(Side.BUY, quantity=1.0, ts_ns=4 * HOUR_NS))
    assert result.reason is R.MAX_DRAWDOWN
    assert "drawdown" in result.detail
    assert engine.check(req(Side.SELL, quantity=10.0)) is None


def test_on_breach_hears_each_drawdown_breach_once() -> None:
    heard: list[tuple[DenyReason, str]] = []
    engine = make_engine(limits(max_drawdown_pct=10.0), on_breach=lambda *a: heard.append(a))
    engine.on_equity(0, 100.0)

    engine.on_equity(1, 85.0)
    engine.on_equity(2, 80.0)  # already REDUCING: no second notice

    assert heard == [(R.MAX_DRAWDOWN, "drawdown 15.00% > max_drawdown_pct 10.0")]
    assert engine.breach_listener is not None


def test_on_breach_hears_the_daily_loss_breach_once_a_day() -> None:
    heard: list[tuple[DenyReason, str]] = []
    engine = make_engine(limits(max_daily_loss_pct=5.0), on_breach=lambda *a: heard.append(a))
    engine.on_equity(0, 100.0)

    engine.on_equity(HOUR_NS, 94.0)
    engine.on_equity(2 * HOUR_NS, 93.0)
    engine.on_equity(DAY_NS, 100.0)  # a new day: a new reference
    engine.on_equity(DAY_NS + HOUR_NS, 90.0)

    assert [code for code, _ in heard] == [R.MAX_DAILY_LOSS, R.MAX_DAILY_LOSS]
    assert heard[0][1] == "daily loss 6.00% > max_daily_loss_pct 5.0"


def test_without_on_breach_a_breach_only_changes_the_state() -> None:
    engine = make_engine(limits(max_drawdown_pct=10.0))
    engine.on_equity(0, 100.0)

    engine.on_equity(1, 50.0)

    assert engine.breach_listener is None
    assert engine.state is TradingState.REDUCING


def test_drawdown_state_persists_after_equity_recovers() -> None:
    engine = make_engine(limits(max_drawdown_pct=10.0))
    engine.on_equity(0, 100.0)
    engine.on_equity(1, 80.0)

    engine.on_equity(2, 150.0)  # a new high does not resume trading by itself

    assert engine.state is TradingState.REDUCING
    assert denied(engine, req()).reason is R.MAX_DRAWDOWN


def test_drawdown_breach_does_not_override_halted() -> None:
    engine = make_engine(limits(max_drawdown_pct=10.0))
    engine.on_equity(0, 100.0)
    engine.set_state(TradingState.HALTED, "kill switch")

    engine.on_equity(1, 50.0)

    assert engine.state is TradingState.HALTED
    assert engine.state_reason == "kill switch"


def test_daily_loss_breach_denies_increases_until_next_utc_day() -> None:
    account = FakeAccount(positions={"AAA": 10.0})
    engine = make_engine(limits(max_daily_loss_pct=5.0), account=account)
    day1 = 10 * DAY_NS
    engine.on_equity(day1 + 9 * HOUR_NS, 100_000.0)  # the day's opening equity
    engine.on_equity(day1 + 10 * HOUR_NS, 96_000.0)
    assert engine.check(req()) is None

    engine.on_equity(day1 + 11 * HOUR_NS, 94_000.0)  # 6 % down on the day

    assert engine.daily_loss_breached
    assert engine.state is TradingState.ACTIVE  # daily loss does not change the state
    result = denied(engine, req())
    assert result.reason is R.MAX_DAILY_LOSS
    assert "max_daily_loss_pct 5.0" in result.detail
    assert "next day" in result.detail
    assert engine.check(req(Side.SELL, quantity=10.0)) is None  # reducing passes

    engine.on_equity(day1 + DAY_NS - 1, 99_000.0)  # recovered, but still the same day
    assert denied(engine, req()).reason is R.MAX_DAILY_LOSS

    engine.on_equity(day1 + DAY_NS, 99_000.0)  # next UTC midnight

    assert not engine.daily_loss_breached
    assert engine.day_start_equity == 99_000.0
    assert engine.check(req()) is None


def test_daily_loss_is_measured_from_each_days_opening_equity() -> None:
    engine = make_engine(limits(max_daily_loss_pct=5.0))
    engine.on_equity(0, 100_000.0)
    engine.on_equity(DAY_NS + HOUR_NS, 90_000.0)  # day 2 opens 10 % lower: a new reference
    engine.on_equity(DAY_NS + 2 * HOUR_NS, 86_000.0)  # 4.4 % below day 2's open

    assert not engine.daily_loss_breached
    assert engine.check(req()) is None


def test_checks_switched_off_with_none_never_fire() -> None:
    config = RiskConfig(
        max_position_qty=None,
        max_position_notional=None,
        max_order_notional=None,
        max_gross_exposure_pct=None,
        price_band_pct=None,
        max_open_orders=None,
        check_buying_power=False,
        max_daily_loss_pct=None,
        max_drawdown_pct=None,
    )
    engine = make_engine(config, FakeAccount(cash=1.0), FakeOrders({"AAA": 1e9}, n_open=10**6))
    engine.on_equity(0, 1_000_000.0)
    engine.on_equity(HOUR_NS, 1.0)  # -99.9999 %

    result = engine.check(req(quantity=1e9, order_type=OrderType.LIMIT, limit=1_000.0))

    assert result is None
    assert engine.state is TradingState.ACTIVE
    assert not engine.daily_loss_breached


def test_on_equity_tracks_peak_and_first_day_start() -> None:
    engine = make_engine()

    engine.on_equity(5 * HOUR_NS, 1_000.0)
    engine.on_equity(6 * HOUR_NS, 1_200.0)
    engine.on_equity(7 * HOUR_NS, 1_100.0)

    assert engine.peak_equity == 1_200.0
    assert engine.day_start_equity == 1_000.0


# -- regressions (found as bugs, now fixed) ------------------------------------------


def test_disabled_drawdown_and_daily_checks_ignore_negative_equity() -> None:
    engine = make_engine(limits(max_drawdown_pct=None, max_daily_loss_pct=None))
    engine.on_equity(0, 10_000.0)

    engine.on_equity(HOUR_NS, -500.0)

    assert engine.state is TradingState.ACTIVE
    assert not engine.daily_loss_breached


def test_buying_power_includes_pending_buys() -> None:
    engine = make_engine(
        limits(check_buying_power=True),
        account=FakeAccount(cash=10_000.0),
        orders=FakeOrders(pending={"AAA": 60.0}),  # 6,000 already committed
    )

    result = engine.check(req(quantity=60.0))

    assert result is not None
    assert result.reason is R.INSUFFICIENT_BUYING_POWER


def test_gross_exposure_includes_pending_orders_of_other_symbols() -> None:
    engine = make_engine(
        limits(max_gross_exposure_pct=100.0),
        account=FakeAccount(cash=10_000.0),
        orders=FakeOrders(pending={"BBB": 120.0}),  # 120 x 50 = 6,000 working
    )

    result = engine.check(req(quantity=60.0))  # 6,000 more: 12,000 > 10,000

    assert result is not None
    assert result.reason is R.MAX_GROSS_EXPOSURE


def test_price_band_boundary_is_symmetric() -> None:
    engine = make_engine(limits(price_band_pct=10.0))
    assert engine.check(req(order_type=OrderType.LIMIT, limit=90.0)) is None

    assert engine.check(req(order_type=OrderType.LIMIT, limit=110.0)) is None


# -- runtime limits ------------------------------------------------------------------------------


def test_set_limit_applies_from_the_next_order_and_refuses_an_invalid_value() -> None:
    from pydantic import ValidationError

    engine = make_engine()
    assert engine.check(req(quantity=10.0)) is None

    engine.set_limit("max_position_qty", 5)
    assert denied(engine, req(quantity=10.0)).reason is DenyReason.MAX_POSITION
    with pytest.raises(ValidationError):
        engine.set_limit("max_drawdown_pct", 150)
    assert engine.config.max_drawdown_pct is None and engine.config.max_position_qty == 5
    engine.set_limit("max_position_qty", None)
    assert engine.check(req(quantity=10.0)) is None


# -- as the engine wires it ----------------------------------------------------------------------


def wired_risk(broker: dict[str, float], risk: dict[str, Any]) -> tuple[RiskEngine, str, float]:
    """A run's risk engine after a few bars: it, the symbol and its last price."""
    from ultrathink.data import load_data
    from ultrathink.decision.builtin import BuyAndHold
    from ultrathink.engine.config import EngineConfig
    from ultrathink.execution.costs import PaperBrokerConfig
    from ultrathink.testing.engine import engine_for, run_engine

    data = load_data("synthetic:n_bars=20,seed=1")
    config = EngineConfig(broker=PaperBrokerConfig(**broker), risk=limits(**risk))
    engine = run_engine(engine_for(BuyAndHold(), data, config, mode="backtest"), data)
    symbol = data.symbols[0]
    last = engine.parts.portfolio.last_price(symbol)
    assert last is not None
    return engine.parts.risk, symbol, last


@pytest.mark.parametrize(
    ("configured_bps", "expected_bps"), [(0.0, 15.0), (3.0, 15.0), (40.0, 40.0)]
)
def test_the_wiring_estimates_buy_costs_from_the_broker(
    configured_bps: float, expected_bps: float
) -> None:
    # fee_estimate_bps = max(risk's, commission + slippage); the broker's order fee is added
    broker = {"commission_bps": 10.0, "slippage_bps": 5.0, "fee_per_order": 2.0}
    risk, symbol, last = wired_risk(
        broker, {"check_buying_power": True, "fee_estimate_bps": configured_bps}
    )

    result = denied(risk, req(quantity=10_000.0, symbol=symbol))

    notional = 10_000.0 * last
    costs = notional * expected_bps / 1e4 + 2.0
    assert risk.config.fee_estimate_bps == expected_bps
    assert result.reason is R.INSUFFICIENT_BUYING_POWER
    assert f"buy of {notional:,.2f} (+{costs:,.2f} est. costs)" in result.detail


def test_the_wiring_bands_limit_prices_but_not_stops() -> None:
    risk, symbol, last = wired_risk({}, {"price_band_pct": 10.0})

    protective = req(Side.SELL, 1.0, symbol, OrderType.STOP, stop=last * 0.8, reduce_only=True)
    far_limit = req(Side.BUY, 1.0, symbol, OrderType.LIMIT, limit=last * 0.8)

    assert risk.check(protective) is None
    assert denied(risk, far_limit).reason is R.PRICE_BAND
