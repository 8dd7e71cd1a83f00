"""The working-orders view (``engine/working.py``): what is still working, and its sums."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.core.enums import Side
from ultrathink.engine.working import WorkingOrder, WorkingOrders

PRICES = {"AAA": 10.0, "BBB": 200.0}


def view() -> WorkingOrders:
    return WorkingOrders(PRICES.get)


def test_an_empty_view_has_nothing_working() -> None:
    w = view()

    assert w.pending_qty("AAA") == 0.0 and w.n_open_orders() == 0
    assert w.pending_buy_notional() == 0.0 and w.pending_gross_notional("AAA") == 0.0
    assert w.orders() == [] and "O-1" not in w


def test_added_orders_work_signed_per_symbol_and_are_valued_at_their_price() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 5.0, None)  # market: valued at the last price (10)
    w.add("O-2", "AAA", Side.SELL, 2.0, 11.0)  # limit 11
    w.add("O-3", "BBB", Side.BUY, 1.0, 190.0)  # limit 190

    assert w.pending_qty("AAA") == 3.0 and w.pending_qty("BBB") == 1.0
    assert w.n_open_orders() == 3 and "O-2" in w
    assert w.pending_buy_notional() == 5.0 * 10.0 + 1.0 * 190.0
    assert w.pending_gross_notional("AAA") == 190.0
    assert w.pending_gross_notional("BBB") == 5.0 * 10.0 + 2.0 * 11.0


def test_a_market_order_without_a_price_yet_counts_nothing_in_the_notional_sums() -> None:
    w = view()
    w.add("O-1", "ZZZ", Side.BUY, 5.0, None)

    assert w.pending_qty("ZZZ") == 5.0
    assert w.pending_buy_notional() == 0.0 and w.pending_gross_notional("AAA") == 0.0


def test_partial_fills_shrink_the_rest_until_the_order_leaves() -> None:
    w = view()
    w.add("O-1", "AAA", Side.SELL, 10.0, 9.5)

    w.filled("O-1", 4.0)
    assert w.pending_qty("AAA") == -6.0
    assert w.orders() == [WorkingOrder("O-1", "AAA", Side.SELL, 6.0, 9.5)]
    assert w.pending_gross_notional("BBB") == 6.0 * 9.5
    w.filled("O-1", 6.0)
    assert w.pending_qty("AAA") == 0.0 and w.n_open_orders() == 0 and "O-1" not in w


def test_an_ended_order_releases_its_unfilled_rest() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 10.0, None)
    w.add("O-2", "AAA", Side.BUY, 3.0, None)
    w.filled("O-1", 4.0)

    w.ended("O-1")  # e.g. cancelled: the 6 left no longer work
    assert w.pending_qty("AAA") == 3.0 and [o.client_order_id for o in w.orders()] == ["O-2"]
    assert w.pending_buy_notional() == 3.0 * 10.0


def test_unknown_ids_and_repeated_reports_change_nothing() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 2.0, None)
    w.filled("O-9", 1.0)
    w.ended("O-9")
    w.filled("O-1", 2.0)  # filled: gone
    w.filled("O-1", 2.0)  # a late duplicate report
    w.ended("O-1")  # and its terminal event

    assert w.pending_qty("AAA") == 0.0 and w.n_open_orders() == 0


def test_an_overfill_never_makes_the_working_quantity_negative() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 2.0, None)

    w.filled("O-1", 5.0)  # more than was working: only the rest counts

    assert w.pending_qty("AAA") == 0.0 and w.n_open_orders() == 0
    assert w.pending_buy_notional() == 0.0


def test_dust_below_epsilon_ends_the_order() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 1.0, None)

    w.filled("O-1", 1.0 - 1e-12)

    assert "O-1" not in w and w.pending_qty("AAA") == pytest.approx(0.0, abs=1e-9)


def test_orders_come_in_submission_order_and_filter_by_symbol() -> None:
    w = view()
    for i, symbol in enumerate(["BBB", "AAA", "BBB", "AAA", "BBB"], start=1):
        w.add(f"O-{i}", symbol, Side.BUY, float(i), None)
    w.filled("O-3", 1.0)  # a partial fill keeps its place

    assert [o.client_order_id for o in w.orders()] == ["O-1", "O-2", "O-3", "O-4", "O-5"]
    assert [o.client_order_id for o in w.orders("BBB")] == ["O-1", "O-3", "O-5"]
    assert [o.remaining for o in w.orders("BBB")] == [1.0, 2.0, 5.0]
    assert w.orders("CCC") == []


# one step: add an order, fill part (or more) of one, or end one
_step = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["AAA", "BBB"]), st.sampled_from(Side),
              st.integers(1, 50).map(float), st.none() | st.floats(1.0, 500.0)),
    st.tuples(st.just("fill"), st.integers(0, 30), st.floats(0.0, 60.0)),
    st.tuples(st.just("end"), st.integers(0, 30)),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(_step, max_size=60))
def test_the_sums_always_match_the_orders_and_never_go_negative(steps: list[Any]) -> None:
    w = view()
    n = 0
    for step in steps:
        if step[0] == "add":
            n += 1
            _, symbol, side, qty, price = step
            w.add(f"O-{n}", symbol, side, qty, price)
        elif step[0] == "fill":
            w.filled(f"O-{step[1]}", step[2])
        else:
            w.ended(f"O-{step[1]}")
        orders = w.orders()
        assert all(o.remaining > 0 for o in orders)
        for symbol in PRICES:
            signed = sum(
                o.remaining if o.side is Side.BUY else -o.remaining
                for o in orders
                if o.symbol == symbol
            )
            assert w.pending_qty(symbol) == pytest.approx(signed, abs=1e-6)
            buys = sum(o.remaining for o in orders if o.symbol == symbol and o.side is Side.BUY)
            sells = sum(o.remaining for o in orders if o.symbol == symbol and o.side is Side.SELL)
            assert buys >= 0 and sells >= 0
        assert w.n_open_orders() == len(orders)
        assert w.pending_buy_notional() >= 0


def test_a_dust_rest_leaves_with_the_order_and_the_sum_is_exactly_zero() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 10.0, None)

    w.filled("O-1", 3.3)
    w.filled("O-1", 6.7 - 1e-12)  # a venue's float arithmetic: 1e-12 short of the rest

    assert "O-1" not in w and w.n_open_orders() == 0
    assert w.pending_qty("AAA") == 0.0, "no dust left working"


def test_float_sums_of_several_orders_snap_to_zero_when_the_last_one_leaves() -> None:
    w = view()
    w.add("O-1", "AAA", Side.BUY, 0.1, None)
    w.add("O-2", "AAA", Side.BUY, 0.2, None)  # 0.1 + 0.2 = 0.30000000000000004
    w.filled("O-1", 0.1)
    assert w.pending_qty("AAA") == pytest.approx(0.2, abs=1e-12)

    w.filled("O-2", 0.2)

    assert w.pending_qty("AAA") == 0.0


# a partial fill of a working order: the fraction of its rest that fills
_fraction = st.floats(0.01, 1.0) | st.sampled_from([1.0, 1.0 - 1e-12, 1.0 + 1e-12, 1 / 3])


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.floats(0.001, 1e6), min_size=1, max_size=6),
    fractions=st.lists(_fraction, min_size=1, max_size=40),
    sides=st.lists(st.sampled_from(Side), min_size=6, max_size=6),
)
def test_once_every_order_is_filled_nothing_works_exactly(
    sizes: list[float], fractions: list[float], sides: list[Side]
) -> None:
    """Fill every order in float pieces: the view ends empty, with a sum of exactly 0."""
    w = view()
    for i, qty in enumerate(sizes):
        w.add(f"O-{i}", "AAA", sides[i], qty, None)
    k = 0
    while w.n_open_orders():
        order = w.orders()[k % w.n_open_orders()]
        fraction = fractions[k % len(fractions)] if k < 200 else 1.0
        w.filled(order.client_order_id, order.remaining * fraction)
        k += 1
        signed = sum(o.remaining if o.side is Side.BUY else -o.remaining for o in w.orders())
        assert w.pending_qty("AAA") == pytest.approx(signed, rel=1e-9, abs=1e-6)
    assert w.pending_qty("AAA") == 0.0
    assert w.pending_buy_notional() == 0.0 and w.orders() == []
