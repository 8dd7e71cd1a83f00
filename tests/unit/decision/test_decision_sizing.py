"""The sizing policy (``decision/sizing.py``) on a real portfolio and working-orders view.

Examples pin down each rule (modes, lots, the cash cap, covering a short, the buffer); the
property ties the policy to the pre-trade check it must agree with: whatever the account,
the working orders, the prices and the costs, a buy capped by ``SizingPolicy.cap_buy`` and
checked by a ``RiskEngine`` configured as ``engine/wiring.py`` configures it is never
denied INSUFFICIENT_BUYING_POWER.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from ultrathink.core.enums import DenyReason, Side
from ultrathink.core.events import Fill, OrderRequest
from ultrathink.decision.sizing import SizingPolicy
from ultrathink.engine.config import SizingConfig
from ultrathink.engine.working import WorkingOrders
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.config import RiskConfig
from ultrathink.risk.engine import RiskEngine

T0 = 1_600_000_000_000_000_000


def account(cash: float, prices: dict[str, float] | None = None) -> tuple[Portfolio, WorkingOrders]:
    pf = Portfolio(cash)
    for symbol, price in (prices or {"AAA": 100.0}).items():
        pf.mark(symbol, price)
    return pf, WorkingOrders(pf.last_price)


def fill(pf: Portfolio, symbol: str, signed_qty: float, price: float, fee: float = 0.0) -> None:
    side = Side.BUY if signed_qty > 0 else Side.SELL
    n = pf.n_fills + 1
    pf.apply_fill(Fill(T0, f"O-{n}", f"O-{n}-F1", symbol, side, abs(signed_qty), price, fee))


def policy(pf: Portfolio, working: WorkingOrders, n_symbols: int = 1, **kw: Any) -> SizingPolicy:
    settings_keys = ("mode", "quantity", "fraction", "lot_size")
    sizing = SizingConfig(**{k: v for k, v in kw.items() if k in settings_keys})
    costs = {k: v for k, v in kw.items() if k not in settings_keys}
    return SizingPolicy(sizing, n_symbols, pf, working, **costs)


# -- order_size ------------------------------------------------------------------------------
def test_fixed_mode_is_the_quantity_rounded_down_to_the_lot() -> None:
    pf, w = account(1_000.0)

    assert policy(pf, w, mode="fixed", quantity=7.9).order_size(100.0) == 7.0
    assert policy(pf, w, mode="fixed", quantity=7.9, lot_size=5.0).order_size(100.0) == 5.0
    assert policy(pf, w, mode="fixed", quantity=4.0, lot_size=5.0).order_size(100.0) == 0.0
    # fixed is the policy's position: the cash cap applies to the buy, not to the size
    assert policy(pf, w, mode="fixed", quantity=1e6).order_size(100.0) == 1e6


def test_all_in_splits_equity_across_symbols_net_of_costs() -> None:
    pf, w = account(100_000.0, {"AAA": 100.0, "BBB": 50.0})
    fill(pf, "BBB", 100.0, 50.0)  # equity stays 100,000: cash 95,000 + 100 × 50

    sized = policy(pf, w, n_symbols=2, cost_bps=10.0)
    assert sized.order_size(100.0) == 499.0  # 50,000 / (100 × 1.001) = 499.5
    assert policy(pf, w, n_symbols=2, cost_bps=10.0, lot_size=10.0).order_size(100.0) == 490.0
    assert policy(pf, w, n_symbols=2, fraction=0.5).order_size(100.0) == 250.0
    assert policy(pf, w, n_symbols=2, lot_size=0.5).order_size(30.0) == 1666.5
    assert sized.order_size(0.0) == 0.0 and sized.order_size(-1.0) == 0.0


# -- affordable_qty and cap_buy --------------------------------------------------------------
def test_affordable_qty_is_cash_less_working_buys_costs_and_the_fee() -> None:
    pf, w = account(10_000.0)
    assert policy(pf, w).affordable_qty(100.0) == 100.0
    assert policy(pf, w, fee_per_order=5.0).affordable_qty(100.0) == 99.0
    assert policy(pf, w, cost_bps=100.0).affordable_qty(100.0) == 99.0  # 10,000 / 101
    assert policy(pf, w, lot_size=30.0).affordable_qty(100.0) == 90.0

    w.add("O-1", "AAA", Side.BUY, 20.0, None)  # 2,000 already committed at the last price
    w.add("O-2", "AAA", Side.SELL, 50.0, 120.0)  # sells commit no cash
    assert policy(pf, w).affordable_qty(100.0) == 80.0
    assert policy(pf, w, cost_bps=100.0).available_cash() == pytest.approx(10_000 - 2_020)


def test_nothing_is_affordable_without_cash_or_price() -> None:
    pf, w = account(10_000.0)
    fill(pf, "AAA", 120.0, 100.0)  # bought on margin: cash -2,000

    assert policy(pf, w).affordable_qty(100.0) == 0.0
    assert policy(account(50.0)[0], w, fee_per_order=60.0).affordable_qty(1.0) == 0.0
    assert policy(*account(1e6)).affordable_qty(0.0) == 0.0
    assert policy(*account(1e6)).affordable_qty(float("nan")) == 0.0


def test_cash_buffer_pct_keeps_a_share_of_cash_uncommitted() -> None:
    pf, w = account(10_000.0)

    assert policy(pf, w, cash_buffer_pct=10.0).affordable_qty(100.0) == 90.0
    assert policy(pf, w, cash_buffer_pct=10.0).available_cash() == pytest.approx(9_000.0)
    assert policy(pf, w, cash_buffer_pct=100.0).affordable_qty(100.0) == 0.0


def test_cap_buy_caps_only_buys_that_end_long() -> None:
    pf, w = account(1_000.0)
    sized = policy(pf, w)  # 10 units affordable at 100

    assert sized.cap_buy(0.0, -5.0, 100.0) == -5.0, "sells are never capped"
    assert sized.cap_buy(0.0, 50.0, 100.0) == 10.0
    assert sized.cap_buy(0.0, 8.0, 100.0) == 8.0
    assert sized.cap_buy(5.0, 50.0, 100.0) == 10.0, "adding to a long: what cash covers"
    assert sized.cap_buy(-30.0, 20.0, 100.0) == 20.0, "still short after it: no cash needed"
    assert sized.cap_buy(-30.0, 30.0, 100.0) == 30.0, "covering exactly: no cash needed"


def test_cap_buy_always_lets_a_short_be_covered() -> None:
    pf, w = account(1_000.0)
    fill(pf, "AAA", 200.0, 100.0)  # cash -19,000: nothing is affordable
    broke, rich = policy(pf, w), policy(*account(1_000.0))

    assert broke.cap_buy(-30.0, 50.0, 100.0) == 30.0, "covers the short, opens nothing"
    assert rich.cap_buy(-5.0, 50.0, 100.0) == 10.0, "covers 5 and opens what cash covers"
    assert rich.cap_buy(-30.0, 50.0, 100.0) == 30.0, "covering more than cash covers"


# -- the property: sizing and risk agree --------------------------------------------------------
SYMBOLS = ("AAA", "BBB", "CCC")
_price = st.floats(0.01, 100_000.0, allow_nan=False, allow_infinity=False)
_qty = st.floats(0.001, 10_000.0, allow_nan=False, allow_infinity=False)


@st.composite
def accounts(draw: st.DrawFn) -> dict[str, Any]:
    prices = {s: draw(_price) for s in SYMBOLS}
    fills = draw(
        st.lists(st.tuples(st.sampled_from(SYMBOLS), _qty, st.booleans(), _price), max_size=6)
    )
    working = draw(
        st.lists(
            st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(Side), _qty, st.none() | _price),
            max_size=6,
        )
    )
    return {
        "cash": draw(st.floats(0.0, 1e9, allow_nan=False)),
        "prices": prices,
        "fills": fills,
        "working": working,
        "cost_bps": draw(st.sampled_from([0.0, 0.5, 3.0, 10.0, 25.0]) | st.floats(0.0, 500.0)),
        "fee": draw(st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0.0, 1_000.0)),
        "lot": draw(st.sampled_from([1.0, 0.1, 0.001, 10.0, 100.0, 0.25])),
        "buffer": draw(st.sampled_from([0.0, 0.0, 5.0]) | st.floats(0.0, 50.0)),
        "symbol": draw(st.sampled_from(SYMBOLS)),
        "target": draw(st.floats(-20_000.0, 1e7, allow_nan=False)),
    }


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=accounts())
@example(  # a large account: costs computed in two different orders must still agree
    case={
        "cash": 987_654_321.12, "prices": {"AAA": 33.33, "BBB": 1.0, "CCC": 7.0}, "fills": [],
        "working": [("AAA", Side.BUY, 1234.5, None)], "cost_bps": 13.0, "fee": 0.7,
        "lot": 0.001, "buffer": 0.0, "symbol": "AAA", "target": 1e7,
    }
)  # fmt: skip
def test_a_buy_capped_by_the_policy_is_never_denied_for_buying_power(case: dict[str, Any]) -> None:
    pf, working = account(case["cash"], case["prices"])
    for symbol, qty, buy, price in case["fills"]:
        fill(pf, symbol, qty if buy else -qty, price)
    for symbol in SYMBOLS:  # every position marked at its symbol's last price
        pf.mark(symbol, case["prices"][symbol])
    for i, (symbol, side, qty, price) in enumerate(case["working"]):
        working.add(f"W-{i}", symbol, side, qty, price)
    cost_bps, fee = case["cost_bps"], case["fee"]
    sizing = SizingPolicy(
        SizingConfig(lot_size=case["lot"]), len(SYMBOLS), pf, working,
        cost_bps=cost_bps, fee_per_order=fee, cash_buffer_pct=case["buffer"],
    )  # fmt: skip
    # risk as the wiring builds it: the same cost estimate, the broker's fee per order
    limits = RiskConfig(
        max_gross_exposure_pct=None, price_band_pct=None, max_open_orders=None,
        fee_estimate_bps=cost_bps,
    )  # fmt: skip
    risk = RiskEngine(limits, pf, working, fixed_fee_estimate=fee)
    symbol = case["symbol"]
    price = pf.last_price(symbol)
    assert price is not None
    # what Strategy.target_position does: from position + working, to the target
    current = pf.position(symbol) + working.pending_qty(symbol)
    delta = case["target"] - current
    if delta <= 0:
        return
    qty = sizing.cap_buy(current, delta, price)
    note(f"cash={pf.cash!r} current={current!r} delta={delta!r} capped={qty!r}")
    assert 0.0 <= qty <= delta
    if qty <= 0:
        return

    denied = risk.check(OrderRequest("O-new", T0, symbol, Side.BUY, qty))

    assert denied is None or denied.reason is not DenyReason.INSUFFICIENT_BUYING_POWER, denied
