"""The strategy facade (``engine/facade.py``): the ``StrategyContext`` a strategy talks to.

It only delegates — orders to the router, positions and prices to the portfolio, working
quantities to the working-orders view, sizes to the sizing policy — so each test checks that
a question or an order reaches the real component behind it, with a real router, risk
engine and paper venue around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ultrathink.core.bus import MessageBus
from ultrathink.core.clock import TestClock
from ultrathink.core.enums import DenyReason, OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, OrderDenied
from ultrathink.decision.sizing import SizingPolicy
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.booking import ExecutionBooker
from ultrathink.engine.config import SizingConfig
from ultrathink.engine.facade import StrategyFacade
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.router import OrderRouter
from ultrathink.engine.working import WorkingOrders
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.paper import PaperBroker
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.config import RiskConfig
from ultrathink.risk.engine import RiskEngine
from ultrathink.testing.engine import BatchCapture

T0 = 1_600_000_000_000_000_000
MINUTE = 60_000_000_000


class Recording(Strategy):
    """A strategy bound to the facade that keeps its denials."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.denials: list[OrderDenied] = []

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denials.append(denied)


@dataclass
class Rig:
    clock: TestClock
    portfolio: Portfolio
    working: WorkingOrders
    venue: PaperBroker
    capture: BatchCapture
    recorder: Recorder
    risk: RiskEngine
    facade: StrategyFacade
    strategy: Recording

    def bar(self, price: float) -> None:
        self.clock.advance_ns(MINUTE)
        self.venue.on_bar(Bar(self.clock.now_ns(), "AAA", price, price, price, price, 1e6))
        self.portfolio.mark("AAA", price)

    def audit(self) -> list[tuple[str, str]]:
        self.recorder.flush([], [])
        return [(k, d) for _, k, d in self.capture.audit()]


def rig(cash: float = 10_000.0, *, fee: float = 0.0, cost_bps: float = 0.0, **sizing: Any) -> Rig:
    clock = TestClock(T0)
    portfolio = Portfolio(cash)
    working = WorkingOrders(portfolio.last_price)
    limits = RiskConfig(max_gross_exposure_pct=None, fee_estimate_bps=cost_bps)
    risk = RiskEngine(limits, portfolio, working, fixed_fee_estimate=fee)
    capture = BatchCapture()
    recorder = Recorder(capture, cash)
    strategy = Recording()
    booker = ExecutionBooker(portfolio, working, recorder, strategy)
    venue = PaperBroker(PaperBrokerConfig(fee_per_order=fee), clock, booker)
    router = OrderRouter(
        clock, recorder, working, risk, venue, booker, MessageBus(),
        on_denied=strategy.on_order_denied,
    )  # fmt: skip
    policy = SizingPolicy(
        SizingConfig(**sizing), 1, portfolio, working, cost_bps=cost_bps, fee_per_order=fee
    )
    facade = StrategyFacade(clock, router, working, portfolio, policy)
    strategy.bind(facade)
    return Rig(clock, portfolio, working, venue, capture, recorder, risk, facade, strategy)


def test_orders_go_through_the_router_to_the_venue() -> None:
    r = rig()
    r.bar(100.0)

    coid = r.facade.submit(
        "AAA", Side.BUY, 5.0, OrderType.LIMIT, 99.0, None, TimeInForce.DAY, False, "t"
    )

    order = r.venue.get_order(coid)
    assert order is not None and (order.limit_price, order.tif, order.tag) == (
        99.0, TimeInForce.DAY, "t",
    )  # fmt: skip
    assert r.facade.pending_qty("AAA") == 5.0 and r.facade.now_ns() == r.clock.now_ns()


def test_cancels_reach_the_venue_with_the_strategy_named_as_the_reason() -> None:
    r = rig()
    r.bar(100.0)
    ids = [r.strategy.buy("AAA", 1.0, limit=95.0) for _ in range(3)]

    assert r.facade.cancel(ids[0]) is True
    assert r.facade.cancel(ids[0]) is False, "already cancelled"
    assert r.facade.cancel_all("BBB") == 0
    assert r.facade.cancel_all(None) == 2

    assert r.venue.open_orders() == [] and r.facade.pending_qty("AAA") == 0.0
    r.recorder.flush([], [])
    events = r.capture.records("events")
    reasons = [e.reason for e in events if e.status is OrderStatus.CANCELLED]
    assert reasons == ["cancelled by strategy"] + ["cancel_all by strategy"] * 2


def test_account_questions_are_answered_by_the_portfolio() -> None:
    r = rig(10_000.0)
    assert r.facade.last_price("AAA") is None
    r.bar(100.0)
    r.strategy.buy("AAA", 10.0)
    r.bar(110.0)  # fills at the open (110)

    assert r.facade.position("AAA") == 10.0 and r.facade.last_price("AAA") == 110.0
    assert r.facade.cash() == 10_000.0 - 1_100.0
    assert r.facade.equity() == r.portfolio.equity() == 10_000.0
    assert r.strategy.position("AAA") == 10.0 and r.strategy.cash == r.facade.cash()


def test_audit_rows_go_to_the_run_trail() -> None:
    r = rig()

    r.strategy.log_decision("decision.hold", "no signal")

    assert r.audit() == [("decision.hold", "no signal")]


def test_order_size_is_the_sizing_policy() -> None:
    assert rig(mode="fixed", quantity=12.5, lot_size=5.0).facade.order_size("AAA", 100.0) == 10.0
    assert rig(10_000.0).facade.order_size("AAA", 100.0) == 100.0
    assert rig(10_000.0, cost_bps=100.0).strategy.order_size("AAA", 100.0) == 99.0


def test_affordable_buy_caps_at_what_cash_covers_and_counts_the_cap() -> None:
    r = rig(1_000.0, fee=1.0)
    r.bar(100.0)

    assert r.facade.affordable_buy("AAA", 0.0, 5.0) == 5.0 and r.facade.n_capped_buys == 0
    assert r.facade.affordable_buy("AAA", 0.0, 50.0) == 9.0, "(1,000 - 1) / 100"
    assert r.facade.affordable_buy("AAA", -20.0, 50.0) == 20.0, "covering the short"
    assert r.facade.affordable_buy("AAA", -20.0, 10.0) == 10.0, "still short: no cap"
    assert r.facade.n_capped_buys == 2


def test_affordable_buy_without_a_price_leaves_the_buy_to_risk() -> None:
    r = rig(0.0)

    assert r.facade.affordable_buy("AAA", 0.0, 50.0) == 50.0 and r.facade.n_capped_buys == 0
    r.strategy.target_position("AAA", 50.0)
    assert [d.reason for d in r.strategy.denials] == [DenyReason.NO_MARKET_DATA]


def test_a_target_position_beyond_cash_is_capped_and_approved() -> None:
    r = rig(1_000.0, fee=1.0, cost_bps=10.0)
    r.bar(100.0)
    r.strategy.buy("AAA", 3.0, limit=90.0)  # 270 committed to a working buy

    coid = r.strategy.target_position("AAA", 100.0)

    assert coid is not None and r.strategy.denials == []
    order = r.venue.get_order(coid)
    assert order is not None and order.quantity == 7.0  # (1,000 - 270 × 1.001 - 1) / 100.1
    assert r.facade.n_capped_buys == 1
