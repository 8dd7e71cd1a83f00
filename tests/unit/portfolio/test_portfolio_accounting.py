"""Positions, cash, PnL and round trips: hand-computed cases and accounting invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.core.enums import Side
from ultrathink.core.events import Fill
from ultrathink.portfolio.portfolio import ClosedTrade, Portfolio, Position

_n = 0


def fill(
    side: Side, qty: float, price: float, fee: float = 0.0, symbol: str = "AAA", ts_ns: int = 0
) -> Fill:
    global _n
    _n += 1
    return Fill(ts_ns, f"O-{_n}", f"O-{_n}-F1", symbol, side, qty, price, fee)


def buy(qty: float, price: float, **kw: object) -> Fill:
    return fill(Side.BUY, qty, price, **kw)  # type: ignore[arg-type]


def sell(qty: float, price: float, **kw: object) -> Fill:
    return fill(Side.SELL, qty, price, **kw)  # type: ignore[arg-type]


# -- Position ------------------------------------------------------------------------------------


def test_average_price_on_adds() -> None:
    pos = Position("AAA")

    r1 = pos.apply(10.0, 100.0)
    r2 = pos.apply(30.0, 120.0)

    assert (r1, r2) == (0.0, 0.0)
    assert pos.quantity == 40.0
    assert pos.avg_price == pytest.approx((10 * 100 + 30 * 120) / 40)
    assert pos.realized_pnl == 0.0


def test_realized_pnl_on_reductions_keeps_average_price() -> None:
    pos = Position("AAA")
    pos.apply(10.0, 100.0)
    pos.apply(10.0, 110.0)  # avg 105

    realized = pos.apply(-5.0, 120.0)

    assert realized == pytest.approx(5 * 15.0)
    assert pos.quantity == 15.0
    assert pos.avg_price == pytest.approx(105.0)


def test_closing_to_flat_resets_average_price() -> None:
    pos = Position("AAA")
    pos.apply(10.0, 100.0)

    realized = pos.apply(-10.0, 90.0)

    assert realized == pytest.approx(-100.0)
    assert (pos.quantity, pos.avg_price) == (0.0, 0.0)
    assert pos.realized_pnl == pytest.approx(-100.0)


def test_flip_through_zero_opens_remainder_at_fill_price() -> None:
    pos = Position("AAA")
    pos.apply(10.0, 100.0)

    realized = pos.apply(-30.0, 90.0)

    assert realized == pytest.approx(10 * (90.0 - 100.0))
    assert pos.quantity == -20.0
    assert pos.avg_price == 90.0


def test_short_position_pnl() -> None:
    pos = Position("AAA")
    pos.apply(-10.0, 50.0)
    pos.apply(-10.0, 60.0)  # avg 55

    r1 = pos.apply(4.0, 40.0)  # cover 4 at a profit
    r2 = pos.apply(16.0, 70.0)  # cover the rest at a loss

    assert r1 == pytest.approx(4 * 15.0)
    assert r2 == pytest.approx(16 * -15.0)
    assert pos.quantity == 0.0
    assert pos.realized_pnl == pytest.approx(60.0 - 240.0)


def test_short_flip_to_long() -> None:
    pos = Position("AAA")
    pos.apply(-5.0, 20.0)

    realized = pos.apply(8.0, 18.0)

    assert realized == pytest.approx(5 * 2.0)
    assert (pos.quantity, pos.avg_price) == (3.0, 18.0)


def test_residual_below_epsilon_snaps_to_flat() -> None:
    pos = Position("AAA")
    pos.apply(0.3, 10.0)

    pos.apply(-0.1, 10.0)
    pos.apply(-0.2, 10.0)

    assert pos.quantity == 0.0
    assert pos.avg_price == 0.0


def test_unrealized_pnl_uses_last_price() -> None:
    pos = Position("AAA")
    pos.apply(-10.0, 50.0)
    pos.last_price = 45.0

    assert pos.unrealized_pnl == pytest.approx(50.0)


# -- Portfolio -----------------------------------------------------------------------------------


def test_new_portfolio_is_all_cash() -> None:
    pf = Portfolio(10_000.0)

    assert pf.cash == pf.equity() == pf.starting_cash == 10_000.0
    assert pf.position("AAA") == 0.0
    assert pf.get_position("AAA") is None
    assert pf.last_price("AAA") is None
    assert not pf.has_open_positions
    assert pf.positions() == {}
    assert pf.closed_trades == []


def test_fees_reduce_cash_and_are_totalled() -> None:
    pf = Portfolio(10_000.0)

    pf.apply_fill(buy(10, 100.0, fee=5.0))
    pf.apply_fill(sell(4, 110.0, fee=2.0))

    assert pf.cash == pytest.approx(10_000 - 1_000 - 5 + 440 - 2)
    assert pf.total_fees == pytest.approx(7.0)
    assert pf.traded_notional == pytest.approx(1_440.0)
    assert pf.n_fills == 2
    assert pf.realized_pnl() == pytest.approx(4 * 10.0)  # before fees


def test_short_sale_adds_cash() -> None:
    pf = Portfolio(1_000.0)

    pf.apply_fill(sell(10, 50.0))

    assert pf.cash == 1_500.0
    assert pf.position("AAA") == -10.0
    assert pf.equity() == pytest.approx(1_000.0)


def test_equity_is_cash_plus_marked_positions() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(buy(10, 100.0, fee=1.0))
    pf.apply_fill(sell(20, 50.0, symbol="BBB"))

    eq_a = pf.mark("AAA", 110.0)
    eq_b = pf.mark("BBB", 40.0)

    cash = 10_000 - 1_000 - 1 + 1_000
    assert pf.cash == pytest.approx(cash)
    assert eq_a == pytest.approx(cash + 10 * 110 - 20 * 50)  # BBB still at its fill price
    assert eq_b == pytest.approx(cash + 10 * 110 - 20 * 40)
    assert pf.equity() == pytest.approx(eq_b)
    assert pf.gross_exposure() == pytest.approx(10 * 110 + 20 * 40)
    assert pf.unrealized_pnl() == pytest.approx(10 * 10 + 20 * 10)
    assert pf.last_price("AAA") == 110.0


def test_fill_before_any_mark_values_position_at_fill_price() -> None:
    pf = Portfolio(1_000.0)

    pf.apply_fill(buy(5, 20.0))

    assert pf.equity() == pytest.approx(1_000.0)
    assert pf.last_price("AAA") is None


def test_fill_after_mark_values_position_at_the_mark() -> None:
    pf = Portfolio(1_000.0)
    pf.mark("AAA", 25.0)

    pf.apply_fill(buy(5, 20.0))

    assert pf.equity() == pytest.approx(1_000 - 100 + 125)


def test_mark_of_unheld_symbol_only_records_its_price() -> None:
    pf = Portfolio(1_000.0)

    eq = pf.mark("ZZZ", 5.0)

    assert eq == 1_000.0
    assert pf.last_price("ZZZ") == 5.0
    assert not pf.has_open_positions


def test_flat_positions_are_kept_in_positions_but_not_open() -> None:
    pf = Portfolio(1_000.0)
    pf.apply_fill(buy(5, 20.0))

    pf.apply_fill(sell(5, 22.0))

    assert pf.position("AAA") == 0.0
    assert not pf.has_open_positions
    flat = pf.positions()["AAA"]
    assert flat.quantity == 0.0
    assert flat.realized_pnl == pytest.approx(10.0)
    assert pf.get_position("AAA") is flat
    assert pf.gross_exposure() == 0.0


def test_reopened_position_picks_up_latest_mark() -> None:
    pf = Portfolio(1_000.0)
    pf.apply_fill(buy(5, 20.0))
    pf.apply_fill(sell(5, 20.0))
    pf.mark("AAA", 30.0)  # marked while flat

    pf.apply_fill(buy(2, 29.0))

    assert pf.equity() == pytest.approx(1_000 - 58 + 60)


# -- round trips ---------------------------------------------------------------------------------


def test_round_trip_counted_when_flat_with_pnl_net_of_fees() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(buy(10, 100.0, fee=1.0, ts_ns=1))

    pf.apply_fill(sell(10, 110.0, fee=1.5, ts_ns=2))

    assert pf.closed_trades == [ClosedTrade("AAA", 1, 1, 2, 10.0, 100.0 - 2.5)]


def test_scaling_in_and_out_is_one_round_trip() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(buy(10, 100.0, ts_ns=1))
    pf.apply_fill(buy(10, 110.0, ts_ns=2))
    pf.apply_fill(sell(5, 120.0, ts_ns=3))
    assert pf.closed_trades == []

    pf.apply_fill(sell(15, 100.0, ts_ns=4))

    [trade] = pf.closed_trades
    assert (trade.direction, trade.entry_ns, trade.exit_ns) == (1, 1, 4)
    assert trade.max_quantity == 20.0
    assert trade.pnl == pytest.approx(5 * 15 + 15 * -5)


def test_short_round_trip() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(sell(8, 50.0, fee=0.5, ts_ns=3))

    pf.apply_fill(buy(8, 45.0, fee=0.5, ts_ns=9))

    assert pf.closed_trades == [ClosedTrade("AAA", -1, 3, 9, 8.0, 8 * 5.0 - 1.0)]


def test_flip_closes_one_round_trip_and_opens_the_next() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(buy(10, 100.0, fee=1.0, ts_ns=1))

    pf.apply_fill(sell(30, 90.0, fee=3.0, ts_ns=2))  # long 10 -> short 20
    pf.apply_fill(buy(20, 80.0, fee=2.0, ts_ns=3))

    first, second = pf.closed_trades
    assert (first.direction, first.entry_ns, first.exit_ns) == (1, 1, 2)
    assert first.pnl == pytest.approx(10 * -10.0 - 1.0 - 3.0)  # the flip fill's fee closes it
    assert (second.direction, second.entry_ns, second.exit_ns) == (-1, 2, 3)
    assert second.max_quantity == 20.0
    assert second.pnl == pytest.approx(20 * 10.0 - 2.0)


def test_round_trips_are_tracked_per_symbol() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(buy(1, 10.0, symbol="AAA", ts_ns=1))
    pf.apply_fill(sell(2, 20.0, symbol="BBB", ts_ns=2))
    pf.apply_fill(sell(1, 12.0, symbol="AAA", ts_ns=3))

    assert [(t.symbol, t.direction) for t in pf.closed_trades] == [("AAA", 1)]
    assert pf.position("BBB") == -2.0


def test_flip_does_not_inflate_closed_trade_size() -> None:
    pf = Portfolio(10_000.0)
    pf.apply_fill(buy(10, 100.0, ts_ns=1))

    pf.apply_fill(sell(30, 90.0, ts_ns=2))

    assert pf.closed_trades[0].max_quantity == 10.0


# -- invariants ----------------------------------------------------------------------------------

SYMBOLS = ("AAA", "BBB", "CCC")
prices = st.floats(min_value=0.5, max_value=5_000.0).map(lambda p: round(p, 2))
fill_step = st.tuples(
    st.just("fill"),
    st.sampled_from(SYMBOLS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.floats(min_value=0.001, max_value=1_000.0),
    prices,
    st.floats(min_value=0.0, max_value=10.0),
)
mark_step = st.tuples(st.just("mark"), st.sampled_from(SYMBOLS), prices)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.one_of(fill_step, mark_step), max_size=60))
def test_equity_is_cash_plus_sum_of_quantity_times_last_price(steps: list[tuple]) -> None:
    start = 100_000.0
    pf = Portfolio(start)
    cash, qty, last, scale = start, dict.fromkeys(SYMBOLS, 0.0), {}, start
    marked: set[str] = set()

    for step in steps:
        if step[0] == "mark":
            _, symbol, price = step
            pf.mark(symbol, price)
            last[symbol] = price
            marked.add(symbol)
            continue
        _, symbol, side, q, price, fee = step
        pf.apply_fill(fill(side, q, price, fee=fee, symbol=symbol))
        signed = q if side is Side.BUY else -q
        cash -= signed * price + fee
        qty[symbol] += signed
        if symbol not in marked:
            last[symbol] = price
        scale += q * price + fee

        expected = cash + sum(qty[s] * last.get(s, 0.0) for s in SYMBOLS)
        assert math.isclose(pf.equity(), expected, rel_tol=1e-9, abs_tol=1e-9 * scale)

    expected = cash + sum(qty[s] * last.get(s, 0.0) for s in SYMBOLS)
    assert math.isclose(pf.cash, cash, rel_tol=1e-9, abs_tol=1e-9 * scale)
    assert math.isclose(pf.equity(), expected, rel_tol=1e-9, abs_tol=1e-9 * scale)
    for s in SYMBOLS:
        assert math.isclose(pf.position(s), qty[s], abs_tol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(fill_step, max_size=20),
    symbol=st.sampled_from(SYMBOLS),
    qty=st.floats(min_value=0.001, max_value=1_000.0),
    price=prices,
    first=st.sampled_from([Side.BUY, Side.SELL]),
)
def test_zero_cost_round_trip_at_same_price_leaves_equity_unchanged(
    history: list[tuple], symbol: str, qty: float, price: float, first: Side
) -> None:
    pf = Portfolio(100_000.0)
    for _, sym, side, q, p, fee in history:
        pf.apply_fill(fill(side, q, p, fee=fee, symbol=sym))
    pf.mark(symbol, price)
    before = pf.equity()
    second = Side.SELL if first is Side.BUY else Side.BUY

    pf.apply_fill(fill(first, qty, price, symbol=symbol))
    pf.apply_fill(fill(second, qty, price, symbol=symbol))

    scale = 100_000.0 + sum(q * p for _, _, _, q, p, _ in history) + qty * price
    assert math.isclose(pf.equity(), before, rel_tol=1e-9, abs_tol=1e-9 * scale)
