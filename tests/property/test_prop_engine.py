"""Engine invariants under random order flow (Hypothesis).

A planned-order strategy submits market, limit and stop orders (random side, size, time in
force, reduce-only flag, cancels) on random bars of random synthetic data, through the real
kernel, risk engine, paper broker, portfolio and — where stated — the SQLite store. Risk
limits are off so that most orders reach the broker; costs are fixed per example.
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ultrathink.core.enums import TERMINAL_STATUSES, Side, TimeInForce
from ultrathink.core.events import Bar, Fill
from ultrathink.data import MarketData, SyntheticConfig, generate
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import RunSpec, run
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.persistence import Store
from ultrathink.risk.config import RiskConfig

STARTING_CASH = 100_000.0
NS_PER_MS = 1_000_000
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NO_LIMITS = RiskConfig(
    max_gross_exposure_pct=None,
    price_band_pct=None,
    max_open_orders=None,
    check_buying_power=False,
)
COSTS = (
    PaperBrokerConfig(),
    PaperBrokerConfig(commission_bps=5.0, fee_per_order=0.5, slippage_bps=3.0),
    PaperBrokerConfig(
        commission_bps=1.0, slippage_bps=2.0, slippage_vol_mult=0.1, latency_ms=90_000
    ),
    PaperBrokerConfig(commission_bps=2.0, fee_per_order=1.0, max_volume_pct=1.0),
)


KINDS = ("market",) * 4 + ("limit",) * 2 + ("stop",) * 2 + ("bad_limit",)


class Action(NamedTuple):
    """One planned request: on bar event ``bar`` (0-based, across symbols)."""

    bar: int
    symbol_idx: int
    side: Side
    quantity: float
    kind: str  # market | limit | stop | bad_limit (limit price 0: the broker rejects it)
    offset_bps: int
    tif: TimeInForce
    reduce_only: bool
    cancel: int | None  # index of an earlier request to cancel first
    echo: bool  # answer this order's fills with an opposite market order from on_fill


class Submitted(NamedTuple):
    client_order_id: str
    ts_ns: int
    symbol: str
    side: Side
    quantity: float


class PlannedOrders(Strategy):
    """Submits the planned requests; optionally flattens every symbol at bar ``flatten_at``."""

    name = "planned_orders"

    def __init__(self, plan: list[Action], flatten_at: int | None = None) -> None:
        super().__init__()
        self.plan: dict[int, list[Action]] = defaultdict(list)
        for action in plan:
            self.plan[action.bar].append(action)
        self.flatten_at = flatten_at

    def on_start(self) -> None:
        self.n_bars = 0
        self.symbols: list[str] = []
        self.submitted: list[Submitted] = []
        self.echo_ids: set[str] = set()

    def on_bar(self, bar: Bar) -> None:
        if bar.symbol not in self.symbols:
            self.symbols.append(bar.symbol)
        for action in self.plan.get(self.n_bars, ()):
            self._act(action, bar)
        if self.n_bars == self.flatten_at:
            self.cancel_all()
            for symbol in self.symbols:
                self._record(self.target_position(symbol, 0.0), symbol)
        self.n_bars += 1

    def on_fill(self, fill: Fill) -> None:
        if fill.client_order_id in self.echo_ids:
            side = Side.SELL if fill.side is Side.BUY else Side.BUY
            order = self.sell if side is Side.SELL else self.buy
            self._record(order(fill.symbol, fill.quantity, tag="echo-reply"), fill.symbol)

    def _act(self, action: Action, bar: Bar) -> None:
        if action.cancel is not None and self.submitted:
            self.cancel(self.submitted[action.cancel % len(self.submitted)].client_order_id)
        symbol = self.symbols[action.symbol_idx % len(self.symbols)]
        ref = self.ctx.last_price(symbol) or bar.close
        price = ref * (1.0 + action.offset_bps / 1e4)
        kwargs: dict[str, Any] = {"tif": action.tif, "reduce_only": action.reduce_only}
        if action.kind == "limit":
            kwargs["limit"] = price
        elif action.kind == "stop":
            kwargs["stop"] = price
        elif action.kind == "bad_limit":
            kwargs["limit"] = 0.0
        order = self.buy if action.side is Side.BUY else self.sell
        coid = order(symbol, action.quantity, **kwargs)
        self._record(coid, symbol)
        if action.echo:
            self.echo_ids.add(coid)

    def _record(self, coid: str | None, symbol: str) -> None:
        if coid is None:
            return
        # the context's last request is this one: read its side and size back from the id
        req = self._last_request
        self.submitted.append(Submitted(coid, self.ctx.now_ns(), symbol, req[0], req[1]))

    # every order goes through _order: remember side and quantity of the latest request
    def _order(self, symbol: str, side: Side, quantity: float, **kwargs: Any) -> str:
        self._last_request = (side, float(quantity))
        return super()._order(symbol, side, quantity, **kwargs)


# -- data and plans ------------------------------------------------------------------------
@st.composite
def scenarios(draw: st.DrawFn, max_events: int = 300) -> tuple[MarketData, list[Action]]:
    n_symbols = draw(st.integers(1, 2))
    n_bars = draw(st.integers(5, max_events // n_symbols))
    symbols = ("AAA", "BBB")[:n_symbols]
    halt = ()
    if n_symbols == 2 and n_bars > 20 and draw(st.booleans()):
        halt = ({"kind": "halt", "start_bar": 5, "n_bars": n_bars // 3, "symbol": "BBB"},)
    config = SyntheticConfig(
        n_bars=n_bars,
        symbols=symbols,
        seed=draw(st.integers(0, 2**16)),
        vol_annual=draw(st.sampled_from([0.2, 1.0, 3.0])),
        scenarios=halt,
    )
    data = generate(config)
    n_events = len(data)
    action = st.builds(
        Action,
        bar=st.integers(0, n_events - 1),
        symbol_idx=st.integers(0, 1),
        side=st.sampled_from(Side),
        quantity=st.one_of(  # 0 is rare: risk denies it as INVALID_ORDER
            st.integers(0, 60).map(float),
            st.floats(0.25, 60.0).map(lambda q: round(q, 3)),
        ),
        kind=st.sampled_from(KINDS),
        offset_bps=st.integers(-150, 150),
        tif=st.sampled_from(TimeInForce),
        reduce_only=st.sampled_from([False] * 5 + [True]),
        cancel=st.none() | st.integers(0, 100),
        echo=st.booleans(),
    )
    plan = draw(st.lists(action, min_size=1, max_size=40))
    return data, plan


def engine_config(costs: PaperBrokerConfig, chunk_size: int = 65_536) -> EngineConfig:
    return EngineConfig(
        starting_cash=STARTING_CASH, broker=costs, risk=NO_LIMITS, chunk_size=chunk_size
    )


def run_plan(
    data: MarketData,
    plan: list[Action],
    config: EngineConfig,
    db_path: Path | None = None,
    flatten_at: int | None = None,
) -> tuple[RunResult, PlannedOrders]:
    strategy = PlannedOrders(plan, flatten_at)
    result = run(RunSpec(strategy, data, config, "backtest", db_path))
    return result, strategy


# -- reconstruction from fills and data ------------------------------------------------------
def expected_curve(
    data: MarketData, fills: list[Fill], ts_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cash, equity and scale (gross value) at each point, rebuilt from fills and closes."""
    closes = {s: data.for_symbol(s) for s in data.symbols}
    cash, positions, k = STARTING_CASH, defaultdict(float), 0
    out_cash, out_equity, out_scale = [], [], []
    for t in ts_points.tolist():
        while k < len(fills) and fills[k].ts_ns <= t:
            f = fills[k]
            signed = f.quantity if f.side is Side.BUY else -f.quantity
            cash -= signed * f.price + f.fee
            positions[f.symbol] += signed
            k += 1
        value, gross = 0.0, 0.0
        for symbol, qty in positions.items():
            sub = closes[symbol]
            i = int(np.searchsorted(sub.ts_ns, t, side="right")) - 1
            if qty and i >= 0:
                value += qty * float(sub.close[i])
                gross += abs(qty * float(sub.close[i]))
        out_cash.append(cash)
        out_equity.append(cash + value)
        out_scale.append(abs(cash) + gross + STARTING_CASH)
    assert k == len(fills), "every fill happens at or before the last recorded point"
    return np.array(out_cash), np.array(out_equity), np.array(out_scale)


def fills_by_order(fills: list[Fill]) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for f in fills:
        total[f.client_order_id] += f.quantity
    return total


# -- properties ------------------------------------------------------------------------------
@PROPERTY
@given(scenario=scenarios(), costs=st.sampled_from(COSTS))
def test_equity_is_cash_plus_marked_positions_at_every_point(scenario, costs) -> None:
    data, plan = scenario

    result, _ = run_plan(data, plan, engine_config(costs))

    assert result.ts_ns.tolist() == np.unique(data.ts_ns).tolist()
    cash, equity, scale = expected_curve(data, result.fills, result.ts_ns)
    assert np.all(np.abs(result.equity - equity) <= 1e-9 * scale)
    assert np.all(np.abs(result.cash - cash) <= 1e-9 * scale)
    assert result.metrics.final_equity == result.equity[-1]


@PROPERTY
@given(scenario=scenarios(), costs=st.sampled_from(COSTS))
def test_fills_never_exceed_the_order_and_never_come_before_the_next_bar(scenario, costs) -> None:
    data, plan = scenario

    result, strategy = run_plan(data, plan, engine_config(costs))

    requested = {s.client_order_id: s for s in strategy.submitted}
    latency_ns = int(costs.latency_ms * NS_PER_MS)
    for coid, filled in fills_by_order(result.fills).items():
        assert filled <= requested[coid].quantity * (1 + 1e-12) + 1e-12
    for fill in result.fills:
        order = requested[fill.client_order_id]
        assert fill.ts_ns > order.ts_ns, "no fill on the bar that placed the order"
        assert fill.ts_ns >= order.ts_ns + latency_ns
        assert (fill.symbol, fill.side) == (order.symbol, order.side)
        assert fill.quantity > 0
        assert fill.fee >= 0


@PROPERTY
@given(scenario=scenarios(), costs=st.sampled_from(COSTS))
def test_same_inputs_give_identical_runs(scenario, costs) -> None:
    data, plan = scenario
    config = engine_config(costs)

    first, _ = run_plan(data, plan, config)
    second, _ = run_plan(data, plan, config)

    assert first.fills == second.fills
    np.testing.assert_array_equal(first.ts_ns, second.ts_ns, strict=True)
    np.testing.assert_array_equal(first.equity, second.equity, strict=True)
    np.testing.assert_array_equal(first.cash, second.cash, strict=True)
    assert first.order_counts == second.order_counts
    assert first.trades == second.trades
    assert first.metrics == second.metrics


@settings(PROPERTY, max_examples=20)
@given(
    scenario=scenarios(max_events=200),
    costs=st.sampled_from(COSTS),
    chunk_size=st.sampled_from([1, 7, 64, 65_536]),
)
def test_store_accounts_for_every_request(scenario, costs, chunk_size) -> None:
    data, plan = scenario

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "prop.db"
        result, strategy = run_plan(data, plan, engine_config(costs, chunk_size), db)
        with Store(db) as store:
            orders = store.load_orders(result.run_id).set_index("client_order_id")
            counts = store.order_status_counts(result.run_id)
            stored_fills = store.load_fills(result.run_id)
            ts, equity, cash = store.load_equity(result.run_id)
            run_record = store.get_run(result.run_id)
            audit = store.verify_audit()

    requested = {s.client_order_id: s for s in strategy.submitted}
    for status in counts:
        event(f"status {status}")
    if len(stored_fills) > len(fills_by_order(stored_fills)):
        event("partial fills")
    assert set(orders.index) == set(requested)
    assert sum(counts.values()) == len(requested) == sum(result.order_counts.values())
    allowed = {s.value for s in TERMINAL_STATUSES} | {"ACCEPTED", "PARTIALLY_FILLED"}
    assert set(counts) <= allowed
    n_working = counts.get("ACCEPTED", 0) + counts.get("PARTIALLY_FILLED", 0)
    assert n_working == result.order_counts.get("OPEN", 0)
    assert counts.get("DENIED", 0) == result.n_denied
    filled = fills_by_order(stored_fills)
    for coid, row in orders.iterrows():
        assert row["quantity"] == requested[coid].quantity
        assert row["ts_ns"] == requested[coid].ts_ns
        assert filled.get(coid, 0.0) <= row["quantity"] * (1 + 1e-12) + 1e-12
        assert math.isclose(row["filled_qty"], filled.get(coid, 0.0), rel_tol=1e-9, abs_tol=1e-9)
        if row["status"] == "FILLED":
            assert row["filled_qty"] == row["quantity"]
    assert sorted(stored_fills) == sorted(result.fills)
    np.testing.assert_array_equal(ts, result.ts_ns, strict=True)
    np.testing.assert_array_equal(equity, result.equity, strict=True)
    np.testing.assert_array_equal(cash, result.cash, strict=True)
    assert run_record.status == "completed"
    assert audit.ok, audit.problems


@st.composite
def round_trips(draw: st.DrawFn) -> tuple[MarketData, list[Action], float]:
    n_bars = draw(st.integers(4, 300))
    price = draw(st.integers(4, 4000)) / 4  # exact in binary: sums of q × price are exact
    ts = np.arange(n_bars, dtype=np.int64) * 60_000_000_000 + 1_577_836_800_000_000_000
    const = np.full(n_bars, price)
    data = MarketData.from_arrays(ts, ["C"] * n_bars, const, const, const, const, const * 0 + 1e6)
    action = st.builds(
        Action,
        bar=st.integers(0, n_bars - 3),
        symbol_idx=st.just(0),
        side=st.sampled_from(Side),
        quantity=st.integers(1, 1000).map(float),
        kind=st.sampled_from(["market", "limit", "stop"]),
        offset_bps=st.integers(-100, 100),
        tif=st.sampled_from(TimeInForce),
        reduce_only=st.just(False),
        cancel=st.none() | st.integers(0, 100),
        echo=st.booleans(),
    )
    return data, draw(st.lists(action, max_size=30)), price


@PROPERTY
@given(case=round_trips())
def test_round_trips_at_a_constant_price_without_costs_keep_cash_exactly(case) -> None:
    data, plan, price = case
    n_bars = len(data)

    result, _ = run_plan(data, plan, engine_config(PaperBrokerConfig()), flatten_at=n_bars - 2)

    assert all(f.price == price for f in result.fills)
    assert all(f.fee == 0.0 for f in result.fills)
    bought = sum(f.quantity for f in result.fills if f.side is Side.BUY)
    sold = sum(f.quantity for f in result.fills if f.side is Side.SELL)
    assert bought == sold, "flattened at the end"
    assert result.final_positions == {}
    assert result.metrics.final_equity == STARTING_CASH
    assert np.all(result.equity == STARTING_CASH)
    assert result.cash[-1] == STARTING_CASH
