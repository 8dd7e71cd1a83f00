"""The paper broker: no look-ahead fills at the next bar, prices, costs, latency, liquidity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Bar
from ultrathink.execution.broker import Broker
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.paper import PaperBroker
from ultrathink.testing.fakes import MIN_NS, Venue

S = OrderStatus
PaperVenue = Venue[PaperBroker]


def paper(**config: float | None) -> PaperVenue:
    """A paper broker with these ``PaperBrokerConfig`` settings, its clock and its sink."""
    return Venue.paper(PaperBrokerConfig(**config))


@pytest.fixture
def venue() -> PaperVenue:
    return paper()


def start_at_bar0(venue: PaperVenue) -> None:
    venue.bar(0)


# -- interface & bookkeeping -------------------------------------------------------------------


def test_paper_broker_is_a_broker() -> None:
    assert isinstance(paper().broker, Broker)


def test_submit_reports_accepted_and_order_is_open(venue: PaperVenue) -> None:
    start_at_bar0(venue)

    order = venue.submit("O-1")

    assert venue.sink.statuses("O-1") == [S.ACCEPTED]
    assert order.status is S.ACCEPTED
    assert venue.broker.open_orders() == [order]
    assert venue.broker.get_order("O-1") is order
    assert venue.broker.n_open == 1
    assert venue.broker.wants_bars


def test_get_order_unknown_returns_none(venue: PaperVenue) -> None:
    assert venue.broker.get_order("nope") is None


def test_wants_bars_only_while_orders_work_without_vol_slippage(venue: PaperVenue) -> None:
    assert not venue.broker.wants_bars
    venue.submit()
    assert venue.broker.wants_bars

    venue.bar(1)

    assert not venue.broker.wants_bars
    assert venue.broker.n_open == 0


def test_wants_bars_always_when_tracking_volatility() -> None:
    venue = paper(slippage_vol_mult=1.0)

    assert venue.broker.wants_bars
    venue.submit()
    venue.bar(1)
    assert venue.broker.wants_bars


def test_open_orders_by_symbol_in_submission_order(venue: PaperVenue) -> None:
    a1 = venue.submit(symbol="AAA")
    b1 = venue.submit(symbol="BBB")
    a2 = venue.submit(symbol="AAA")

    assert venue.broker.open_orders("AAA") == [a1, a2]
    assert venue.broker.open_orders("BBB") == [b1]
    assert venue.broker.open_orders("CCC") == []
    assert venue.broker.open_orders() == [a1, b1, a2]  # submission order (Broker contract)


def test_positions_reflect_fills_and_omit_flat_symbols(venue: PaperVenue) -> None:
    start_at_bar0(venue)
    venue.submit(quantity=10, side=Side.BUY, symbol="AAA")
    venue.submit(quantity=4, side=Side.SELL, symbol="BBB")
    venue.bar(1, symbol="AAA")
    venue.bar(1, symbol="BBB")
    assert venue.broker.positions() == {"AAA": 10.0, "BBB": -4.0}

    venue.submit(quantity=10, side=Side.SELL, symbol="AAA")
    venue.bar(2, symbol="AAA")

    assert venue.broker.positions() == {"BBB": -4.0}


# -- market orders: no look-ahead ----------------------------------------------------------------


def test_market_order_fills_at_next_bar_open_never_on_its_own_bar(venue: PaperVenue) -> None:
    venue.bar(0, o=50.0)
    venue.submit("O-1", 10, side=Side.BUY)
    venue.broker.on_bar(Bar(0, "AAA", 50.0, 51.0, 49.0, 50.5, 1e9))  # same bar again
    assert venue.sink.fills == []

    venue.bar(1, o=55.0, h=56.0, lo=54.0, c=55.5)

    [fill] = venue.sink.fills
    assert (fill.ts_ns, fill.price, fill.quantity, fill.side) == (MIN_NS, 55.0, 10.0, Side.BUY)
    assert (fill.fee, fill.slippage_bps) == (0.0, 0.0)
    assert fill.fill_id == "O-1-F1"
    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.FILLED]


def test_fill_is_reported_before_its_order_event_and_order_reflects_it(venue: PaperVenue) -> None:
    venue.submit("O-1", 7, side=Side.SELL)

    venue.bar(1, o=80.0)

    assert [type(x).__name__ for x in venue.sink.log] == ["OrderEvent", "Fill", "OrderEvent"]
    assert venue.sink.order_filled_at_fill == [7.0]
    filled = venue.sink.events[-1]
    assert (filled.status, filled.filled_qty) == (S.FILLED, 7.0)
    order = venue.broker.get_order("O-1")
    assert order is not None
    assert order.avg_fill_price == 80.0
    assert not order.is_open
    assert venue.broker.open_orders() == []


def test_order_for_b_is_not_filled_by_a_bar_of_a(venue: PaperVenue) -> None:
    venue.submit(quantity=5, side=Side.BUY, symbol="BBB")

    venue.bar(1, symbol="AAA")
    assert venue.sink.fills == []

    venue.bar(2, o=42.0, symbol="BBB")
    [fill] = venue.sink.fills
    assert (fill.symbol, fill.price) == ("BBB", 42.0)


def test_order_placed_on_bar_t_of_a_is_not_filled_by_bar_t_of_b(venue: PaperVenue) -> None:
    venue.bar(1, symbol="AAA")
    venue.submit(quantity=5, side=Side.BUY, symbol="BBB")  # strategy reacts to AAA at t=1

    venue.broker.on_bar(Bar(MIN_NS, "BBB", 10.0, 11.0, 9.0, 10.0, 1e9))  # BBB's bar at t=1
    assert venue.sink.fills == []

    venue.bar(2, o=12.0, symbol="BBB")
    assert [f.price for f in venue.sink.fills] == [12.0]


# -- limit and stop orders -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit", "bar", "expected"),
    [
        # buy limit: fills at min(open, limit) if low <= limit
        (Side.BUY, 99.0, (100.0, 101.0, 98.0), 99.0),  # trades through the limit
        (Side.BUY, 99.0, (100.0, 101.0, 99.0), 99.0),  # low touches the limit exactly
        (Side.BUY, 99.0, (97.0, 98.0, 96.0), 97.0),  # gaps through: fills at the better open
        (Side.BUY, 99.0, (100.0, 101.0, 99.5), None),  # never reaches the limit
        # sell limit mirrors: fills at max(open, limit) if high >= limit
        (Side.SELL, 101.0, (100.0, 102.0, 99.0), 101.0),
        (Side.SELL, 101.0, (100.0, 101.0, 99.0), 101.0),
        (Side.SELL, 101.0, (103.0, 104.0, 102.0), 103.0),
        (Side.SELL, 101.0, (100.0, 100.5, 99.0), None),
    ],
)
def test_limit_order_fill_price(
    venue: PaperVenue,
    side: Side,
    limit: float,
    bar: tuple[float, float, float],
    expected: float | None,
) -> None:
    o, h, lo = bar
    venue.submit(quantity=3, side=side, order_type=OrderType.LIMIT, limit_price=limit)

    venue.bar(1, o=o, h=h, lo=lo, c=o)

    assert [f.price for f in venue.sink.fills] == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    ("side", "stop", "bar", "expected"),
    [
        # stop buy triggers at max(open, stop) if high >= stop
        (Side.BUY, 102.0, (100.0, 103.0, 99.0), 102.0),
        (Side.BUY, 102.0, (100.0, 102.0, 99.0), 102.0),
        (Side.BUY, 102.0, (105.0, 106.0, 104.0), 105.0),  # gap above the stop
        (Side.BUY, 102.0, (100.0, 101.9, 99.0), None),
        # stop sell triggers at min(open, stop) if low <= stop
        (Side.SELL, 98.0, (100.0, 101.0, 97.0), 98.0),
        (Side.SELL, 98.0, (100.0, 101.0, 98.0), 98.0),
        (Side.SELL, 98.0, (95.0, 96.0, 94.0), 95.0),  # gap below the stop
        (Side.SELL, 98.0, (100.0, 101.0, 98.1), None),
    ],
)
def test_stop_order_trigger_price(
    venue: PaperVenue,
    side: Side,
    stop: float,
    bar: tuple[float, float, float],
    expected: float | None,
) -> None:
    o, h, lo = bar
    order = venue.submit(quantity=3, side=side, order_type=OrderType.STOP, stop_price=stop)

    venue.bar(1, o=o, h=h, lo=lo, c=o)

    assert [f.price for f in venue.sink.fills] == ([] if expected is None else [expected])
    assert order.is_triggered == (expected is not None)


def test_resting_limit_order_fills_on_a_later_bar(venue: PaperVenue) -> None:
    venue.submit(quantity=2, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=90.0)

    venue.bar(1)
    venue.bar(2)
    assert venue.sink.fills == []
    venue.bar(3, o=92.0, h=93.0, lo=89.0, c=91.0)

    assert [(f.ts_ns, f.price) for f in venue.sink.fills] == [(3 * MIN_NS, 90.0)]


def test_triggered_stop_with_remainder_fills_at_later_opens_as_market() -> None:
    venue = paper(max_volume_pct=50.0)
    venue.submit(quantity=10, side=Side.BUY, order_type=OrderType.STOP, stop_price=102.0)

    venue.bar(1, o=100.0, h=103.0, lo=99.0, volume=10.0)  # triggers, 5 fill at the stop
    venue.bar(2, o=90.0, h=91.0, lo=89.0, volume=10.0)  # below the stop: still fills at the open

    assert [(f.quantity, f.price) for f in venue.sink.fills] == [(5.0, 102.0), (5.0, 90.0)]


# -- slippage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("side", "expected"), [(Side.BUY, 100.1), (Side.SELL, 99.9)])
def test_slippage_bps_moves_market_fills_adversely(side: Side, expected: float) -> None:
    venue = paper(slippage_bps=10.0)
    venue.submit(quantity=1, side=side)

    venue.bar(1, o=100.0)

    [fill] = venue.sink.fills
    assert fill.price == pytest.approx(expected)
    assert fill.slippage_bps == 10.0


@pytest.mark.parametrize(
    ("side", "stop", "bar", "expected"),
    [
        (Side.BUY, 102.0, (100.0, 103.0, 99.0), 102.0 * 1.001),
        (Side.SELL, 98.0, (100.0, 101.0, 97.0), 98.0 * 0.999),
    ],
)
def test_slippage_bps_moves_stop_fills_adversely(
    side: Side, stop: float, bar: tuple[float, float, float], expected: float
) -> None:
    venue = paper(slippage_bps=10.0)
    venue.submit(quantity=1, side=side, order_type=OrderType.STOP, stop_price=stop)

    o, h, lo = bar
    venue.bar(1, o=o, h=h, lo=lo, c=o)

    [fill] = venue.sink.fills
    assert fill.price == pytest.approx(expected)
    assert fill.slippage_bps == 10.0


@pytest.mark.parametrize(
    ("side", "limit", "bar", "expected"),
    [
        (Side.BUY, 99.0, (100.0, 101.0, 98.0), 99.0),
        (Side.BUY, 99.0, (97.0, 98.0, 96.0), 97.0),
        (Side.SELL, 101.0, (100.0, 102.0, 99.0), 101.0),
        (Side.SELL, 101.0, (103.0, 104.0, 102.0), 103.0),
    ],
)
def test_slippage_never_touches_limit_fills(
    side: Side, limit: float, bar: tuple[float, float, float], expected: float
) -> None:
    venue = paper(slippage_bps=50.0, slippage_vol_mult=5.0)
    venue.bar(0, o=100.0, h=120.0, lo=80.0, c=100.0)  # a wide previous range
    venue.submit(quantity=1, side=side, order_type=OrderType.LIMIT, limit_price=limit)

    o, h, lo = bar
    venue.bar(1, o=o, h=h, lo=lo, c=o)

    [fill] = venue.sink.fills
    assert fill.price == expected
    assert fill.slippage_bps == 0.0


def test_slippage_vol_mult_uses_previous_bar_range_not_the_fill_bar() -> None:
    venue = paper(slippage_vol_mult=0.5)
    venue.bar(0, o=100.0, h=102.0, lo=98.0, c=100.0)  # range 4 / close 100 = 400 bps
    venue.submit(quantity=1, side=Side.BUY)

    venue.bar(1, o=100.0, h=150.0, lo=50.0, c=100.0)  # huge range: must not be used

    [fill] = venue.sink.fills
    assert fill.slippage_bps == pytest.approx(0.5 * 400.0)
    assert fill.price == pytest.approx(100.0 * (1 + 200.0 / 1e4))


def test_slippage_vol_mult_adds_to_fixed_slippage_per_symbol() -> None:
    venue = paper(slippage_bps=5.0, slippage_vol_mult=1.0)
    venue.bar(0, o=50.0, h=51.0, lo=49.0, c=50.0, symbol="AAA")  # 400 bps
    venue.bar(0, o=10.0, h=10.1, lo=9.9, c=10.0, symbol="BBB")  # 200 bps
    venue.submit(quantity=1, side=Side.SELL, symbol="AAA")
    venue.submit(quantity=1, side=Side.SELL, symbol="BBB")

    # fill bars wide enough for the slipped prices (a fill never leaves its bar's range)
    venue.bar(1, o=50.0, h=51.0, lo=47.0, c=50.0, symbol="AAA")
    venue.bar(1, o=10.0, h=10.1, lo=9.7, c=10.0, symbol="BBB")

    slips = {f.symbol: f.slippage_bps for f in venue.sink.fills}
    assert slips == pytest.approx({"AAA": 405.0, "BBB": 205.0})
    prices = {f.symbol: f.price for f in venue.sink.fills}
    assert prices == pytest.approx({"AAA": 50.0 * (1 - 0.0405), "BBB": 10.0 * (1 - 0.0205)})


@pytest.mark.parametrize(
    ("side", "bar", "expected_price", "expected_bps"),
    [
        # the open is the high: any slippage would buy above every traded price
        (Side.BUY, (101.0, 101.0, 99.0), 101.0, 0.0),
        # 50 bps wanted (100.5), the bar traded up to 100.2: 20 bps paid
        (Side.BUY, (100.0, 100.2, 99.0), 100.2, 20.0),
        # mirror: the open is the low, then a low 20 bps under the open
        (Side.SELL, (99.0, 101.0, 99.0), 99.0, 0.0),
        (Side.SELL, (100.0, 101.0, 99.8), 99.8, 20.0),
    ],
)
def test_slipped_fill_is_capped_to_the_bar_range_and_records_the_slippage_paid(
    side: Side, bar: tuple[float, float, float], expected_price: float, expected_bps: float
) -> None:
    venue = paper(slippage_bps=50.0, commission_bps=10.0)
    venue.submit(quantity=3, side=side)

    o, h, lo = bar
    venue.bar(1, o=o, h=h, lo=lo, c=o)

    [fill] = venue.sink.fills
    assert fill.price == expected_price
    assert fill.slippage_bps == pytest.approx(expected_bps, abs=1e-9)
    assert fill.fee == pytest.approx(3 * expected_price * 0.001)  # on the price paid


def test_slipped_stop_fill_is_capped_to_the_bar_range() -> None:
    venue = paper(slippage_bps=100.0)
    venue.submit(quantity=1, side=Side.BUY, order_type=OrderType.STOP, stop_price=102.0)

    venue.bar(1, o=100.0, h=102.5, lo=99.0, c=102.0)  # triggers at 102; 103.02 never traded

    [fill] = venue.sink.fills
    assert fill.price == 102.5
    assert fill.slippage_bps == pytest.approx(0.5 / 102.0 * 1e4)


@st.composite
def ohlc(draw: st.DrawFn) -> tuple[float, float, float, float]:
    """A consistent bar: low <= open, close <= high (zero ranges included)."""
    o = draw(st.floats(min_value=1.0, max_value=1_000.0))
    c = o * (1 + draw(st.floats(min_value=-0.1, max_value=0.1)))
    h = max(o, c) * (1 + draw(st.sampled_from([0.0, 1e-6, 0.001, 0.05])))
    lo = min(o, c) * (1 - draw(st.sampled_from([0.0, 1e-6, 0.001, 0.05])))
    return o, h, lo, c


@settings(max_examples=150, deadline=None)
@given(
    previous=ohlc(),
    fill_bar=ohlc(),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    stop_at=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
    slippage_bps=st.floats(min_value=0.0, max_value=1_000.0),
    vol_mult=st.floats(min_value=0.0, max_value=10.0),
)
def test_every_fill_price_lies_in_the_bar_range_around_its_base_price(
    previous: tuple[float, float, float, float],
    fill_bar: tuple[float, float, float, float],
    side: Side,
    stop_at: float | None,
    slippage_bps: float,
    vol_mult: float,
) -> None:
    venue = paper(slippage_bps=slippage_bps, slippage_vol_mult=vol_mult)
    o, h, lo, c = fill_bar
    venue.bar(0, *previous)  # the range volatility slippage is taken from
    stop = None if stop_at is None else lo + stop_at * (h - lo)  # a stop the bar reaches
    kind = OrderType.MARKET if stop is None else OrderType.STOP
    venue.submit(quantity=1, side=side, order_type=kind, stop_price=stop)

    venue.bar(1, o, h, lo, c)

    [fill] = venue.sink.fills
    triggered_at = None if stop is None else max(o, stop) if side is Side.BUY else min(o, stop)
    base = o if triggered_at is None else triggered_at
    assert min(lo, base) <= fill.price <= max(h, base)
    adverse = fill.price >= base if side is Side.BUY else fill.price <= base
    assert adverse
    # the recorded slippage is the one paid, never more than asked for
    assert fill.slippage_bps == pytest.approx(abs(fill.price - base) / base * 1e4, abs=1e-6)
    _, h0, l0, c0 = previous
    asked = slippage_bps + vol_mult * (h0 - l0) / c0 * 1e4
    assert fill.slippage_bps <= asked * (1 + 1e-9) + 1e-9


def test_slippage_vol_mult_without_previous_bar_adds_nothing() -> None:
    venue = paper(slippage_vol_mult=2.0)
    venue.submit(quantity=1, side=Side.BUY)

    venue.bar(1, o=100.0, h=110.0, lo=90.0)

    assert venue.sink.fills[0].price == 100.0


# -- fees ----------------------------------------------------------------------------------------


def test_commission_bps_is_charged_on_fill_notional() -> None:
    venue = paper(commission_bps=10.0)
    venue.submit(quantity=20, side=Side.BUY)

    venue.bar(1, o=50.0)

    assert venue.sink.fills[0].fee == pytest.approx(20 * 50.0 * 0.001)


def test_commission_uses_the_slipped_price() -> None:
    venue = paper(commission_bps=100.0, slippage_bps=100.0)
    venue.submit(quantity=1, side=Side.BUY)

    venue.bar(1, o=100.0)

    assert venue.sink.fills[0].fee == pytest.approx(101.0 * 0.01)


def test_fee_per_order_is_charged_once_even_with_partial_fills() -> None:
    venue = paper(fee_per_order=1.5, commission_bps=0.0, max_volume_pct=10.0)
    venue.submit(quantity=25, side=Side.BUY)

    for i in range(1, 5):
        venue.bar(i, volume=100.0)  # 10 per bar

    assert [f.quantity for f in venue.sink.fills] == [10.0, 10.0, 5.0]
    assert [f.fee for f in venue.sink.fills] == [1.5, 0.0, 0.0]


def test_fee_per_order_is_charged_for_every_order() -> None:
    venue = paper(fee_per_order=2.0)
    venue.submit(quantity=1, side=Side.BUY)
    venue.submit(quantity=1, side=Side.BUY)

    venue.bar(1)

    assert [f.fee for f in venue.sink.fills] == [2.0, 2.0]


# -- latency -------------------------------------------------------------------------------------


def test_latency_delays_eligibility_to_bars_at_or_after_submit_plus_latency() -> None:
    venue = paper(latency_ms=90_000.0)  # 1.5 bars
    venue.bar(0)
    order = venue.submit(quantity=1, side=Side.BUY)
    assert order.eligible_ns == 90_000 * 1_000_000

    venue.bar(1, o=101.0)
    assert venue.sink.fills == []
    venue.bar(2, o=102.0)

    assert [f.price for f in venue.sink.fills] == [102.0]


def test_latency_equal_to_bar_interval_fills_on_next_bar() -> None:
    venue = paper(latency_ms=60_000.0)
    venue.bar(0)
    venue.submit(quantity=1, side=Side.BUY)

    venue.bar(1, o=101.0)

    assert [f.price for f in venue.sink.fills] == [101.0]


def test_latency_does_not_expire_day_order_before_it_is_eligible() -> None:
    venue = paper(latency_ms=90_000.0)
    venue.bar(0)
    venue.submit("O-1", 1, side=Side.BUY, tif=TimeInForce.DAY)

    venue.bar(1)
    assert venue.sink.statuses("O-1") == [S.ACCEPTED]
    venue.bar(2)

    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.FILLED]


# -- liquidity -----------------------------------------------------------------------------------


def test_max_volume_pct_splits_fills_across_bars_summing_to_quantity() -> None:
    venue = paper(max_volume_pct=20.0)
    order = venue.submit("O-1", 45, side=Side.SELL)

    volumes = [100.0, 50.0, 0.0, 100.0, 100.0]
    for i, v in enumerate(volumes, start=1):
        venue.bar(i, o=100.0 + i, volume=v)

    qtys = [f.quantity for f in venue.sink.fills]
    assert qtys == [20.0, 10.0, 15.0]  # the zero-volume bar fills nothing
    assert sum(qtys) == 45.0
    assert venue.sink.statuses("O-1") == [
        S.ACCEPTED,
        S.PARTIALLY_FILLED,
        S.PARTIALLY_FILLED,
        S.FILLED,
    ]
    assert [f.ts_ns for f in venue.sink.fills] == [MIN_NS, 2 * MIN_NS, 4 * MIN_NS]
    assert order.avg_fill_price == pytest.approx((20 * 101 + 10 * 102 + 15 * 104) / 45)
    assert venue.broker.positions() == {"AAA": -45.0}
    assert [f.fill_id for f in venue.sink.fills] == ["O-1-F1", "O-1-F2", "O-1-F3"]


@settings(max_examples=60, deadline=None)
@given(
    quantity=st.floats(min_value=0.5, max_value=1_000.0),
    cap_pct=st.floats(min_value=0.5, max_value=100.0),
    volumes=st.lists(st.floats(min_value=0.0, max_value=500.0), min_size=1, max_size=40),
)
def test_partial_fills_never_exceed_order_quantity(
    quantity: float, cap_pct: float, volumes: list[float]
) -> None:
    venue = paper(max_volume_pct=cap_pct)
    order = venue.submit(quantity=quantity, side=Side.BUY)

    for i, v in enumerate(volumes, start=1):
        venue.bar(i, volume=v)

    total = sum(f.quantity for f in venue.sink.fills)
    assert total <= quantity * (1 + 1e-12)
    assert all(f.quantity > 0 for f in venue.sink.fills)
    for fill in venue.sink.fills:
        bar_volume = volumes[fill.ts_ns // MIN_NS - 1]
        assert fill.quantity <= bar_volume * cap_pct / 100.0 * (1 + 1e-12)
    if order.status is S.FILLED:
        assert total == pytest.approx(quantity, rel=1e-12)
        assert venue.broker.positions()["AAA"] == pytest.approx(quantity, rel=1e-12)
    else:
        assert order.is_open
        assert order.filled_qty == pytest.approx(total, rel=1e-12)


# -- time in force -------------------------------------------------------------------------------


@pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.IOC])
def test_unfilled_day_and_ioc_orders_expire_after_first_eligible_bar(tif: TimeInForce) -> None:
    venue = paper()
    order = venue.submit(
        "O-1", 1, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=90.0, tif=tif
    )

    venue.bar(1)  # low 99: no fill
    venue.bar(2, o=85.0, h=86.0, lo=84.0)  # would fill, but the order is gone

    assert venue.sink.fills == []
    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.EXPIRED]
    expired = venue.sink.events[-1]
    assert expired.ts_ns == MIN_NS
    assert tif.value in expired.reason
    assert not order.is_open
    assert venue.broker.open_orders() == []


@pytest.mark.parametrize("tif", [TimeInForce.DAY, TimeInForce.IOC])
def test_partially_filled_day_and_ioc_orders_expire_with_the_rest(tif: TimeInForce) -> None:
    venue = paper(max_volume_pct=10.0)
    venue.submit("O-1", 50, side=Side.BUY, tif=tif)

    venue.bar(1, volume=100.0)
    venue.bar(2, volume=100.0)

    assert [f.quantity for f in venue.sink.fills] == [10.0]
    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.PARTIALLY_FILLED, S.EXPIRED]
    assert venue.sink.events[-1].filled_qty == 10.0


def test_filled_day_order_does_not_expire(venue: PaperVenue) -> None:
    venue.submit("O-1", 1, side=Side.BUY, tif=TimeInForce.DAY)

    venue.bar(1)

    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.FILLED]


def test_gtc_limit_order_keeps_working(venue: PaperVenue) -> None:
    order = venue.submit("O-1", 1, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=50.0)

    for i in range(1, 6):
        venue.bar(i)

    assert order.is_open
    assert venue.sink.statuses("O-1") == [S.ACCEPTED]


def test_day_order_expires_only_on_its_own_symbols_bar(venue: PaperVenue) -> None:
    venue.submit("O-1", 1, side=Side.BUY, symbol="BBB", order_type=OrderType.LIMIT,
                 limit_price=1.0, tif=TimeInForce.DAY)  # fmt: skip

    venue.bar(1, symbol="AAA")
    assert venue.sink.statuses("O-1") == [S.ACCEPTED]
    venue.bar(1, symbol="BBB")

    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.EXPIRED]


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_open_order_reports_cancelled_and_removes_it(venue: PaperVenue) -> None:
    venue.bar(0)
    order = venue.submit("O-1", 1, side=Side.BUY, order_type=OrderType.LIMIT, limit_price=90.0)

    ok = venue.broker.cancel("O-1", "strategy said so")

    assert ok
    assert venue.sink.statuses("O-1") == [S.ACCEPTED, S.CANCELLED]
    cancelled = venue.sink.events[-1]
    assert cancelled.reason == "strategy said so"
    assert cancelled.ts_ns == 0
    assert not order.is_open
    assert venue.broker.open_orders() == []
    assert venue.broker.n_open == 0
    venue.bar(1, o=80.0, h=81.0, lo=79.0)
    assert venue.sink.fills == []


def test_cancel_partially_filled_order_keeps_its_fills() -> None:
    venue = paper(max_volume_pct=10.0)
    venue.submit("O-1", 30, side=Side.BUY)
    venue.bar(1, volume=100.0)

    assert venue.broker.cancel("O-1", "enough")

    cancelled = venue.sink.events[-1]
    assert (cancelled.status, cancelled.filled_qty) == (S.CANCELLED, 10.0)
    assert venue.broker.positions() == {"AAA": 10.0}


def test_cancel_unknown_order_returns_false(venue: PaperVenue) -> None:
    assert venue.broker.cancel("O-404", "x") is False
    assert venue.sink.events == []


@pytest.mark.parametrize("terminal", ["filled", "cancelled", "rejected", "expired"])
def test_cancel_terminal_order_returns_false_and_reports_nothing(terminal: str) -> None:
    venue = paper()
    if terminal == "rejected":
        venue.submit("O-1", 0, side=Side.BUY)
    else:
        tif = TimeInForce.DAY if terminal == "expired" else TimeInForce.GTC
        limit = 1.0 if terminal == "expired" else None
        kind = OrderType.LIMIT if limit else OrderType.MARKET
        venue.submit("O-1", 1, side=Side.BUY, order_type=kind, limit_price=limit, tif=tif)
        if terminal == "cancelled":
            venue.broker.cancel("O-1", "first")
        else:
            venue.bar(1)
    n_events = len(venue.sink.events)

    assert venue.broker.cancel("O-1", "again") is False
    assert len(venue.sink.events) == n_events


# -- invalid requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"quantity": 0.0}, "quantity must be > 0, was 0.0"),
        ({"quantity": -5.0}, "quantity must be > 0, was -5.0"),
        ({"quantity": float("nan")}, "quantity must be > 0"),
        ({"order_type": OrderType.LIMIT}, "LIMIT order needs limit_price > 0, was None"),
        ({"order_type": OrderType.LIMIT, "limit_price": 0.0}, "LIMIT order needs limit_price > 0"),
        ({"order_type": OrderType.LIMIT, "limit_price": -1.0}, "LIMIT order needs limit_price > 0"),
        ({"order_type": OrderType.STOP}, "STOP order needs stop_price > 0, was None"),
    ],
)
def test_invalid_request_is_rejected_with_reason(kwargs: dict, fragment: str) -> None:
    venue = paper()

    order = venue.submit("O-1", **kwargs)

    [event] = venue.sink.events
    assert event.status is S.REJECTED
    assert fragment in event.reason
    assert order.status is S.REJECTED
    assert not order.is_open
    assert venue.broker.open_orders() == []
    assert venue.broker.get_order("O-1") is order
    assert not venue.broker.wants_bars
    venue.bar(1)
    assert venue.sink.fills == []
