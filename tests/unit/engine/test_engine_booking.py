"""Execution booking (``engine/booking.py``): what a real paper venue reports becomes state.

The ``ExecutionBooker`` is the paper broker's sink here, as in a run: orders are added to the
working-orders view (as the router does when it sends one) and submitted to a real
``PaperBroker``; bars make them fill, expire or stay; cancels end them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ultrathink.core.clock import TestClock
from ultrathink.core.enums import (
    TERMINAL_STATUSES,
    DenyReason,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from ultrathink.core.events import Bar, Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.booking import ExecutionBooker, strategy_hook
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.working import WorkingOrders
from ultrathink.errors import StrategyError
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.paper import PaperBroker
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.testing.engine import BatchCapture

T0 = 1_600_000_000_000_000_000
MINUTE = 60_000_000_000
CASH = 10_000.0


class Hooked(Strategy):
    """Keeps what its hooks receive; raises ``raise_in`` hooks' ``error``."""

    name = "hooked"

    def __init__(self, raise_in: str = "", error: Exception | None = None) -> None:
        super().__init__()
        self.raise_in, self.error = raise_in, error or ValueError("boom")
        self.fills: list[Fill] = []
        self.events: list[OrderEvent] = []
        self.denials: list[OrderDenied] = []

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)
        if self.raise_in == "on_fill":
            raise self.error

    def on_order_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        if self.raise_in == "on_order_event":
            raise self.error

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denials.append(denied)
        if self.raise_in == "on_order_denied":
            raise self.error


@dataclass
class Desk:
    clock: TestClock
    portfolio: Portfolio
    working: WorkingOrders
    capture: BatchCapture
    recorder: Recorder
    strategy: Strategy
    booker: ExecutionBooker
    venue: PaperBroker
    n: list[int] = field(default_factory=lambda: [0])

    def send(
        self,
        side: Side,
        qty: float,
        *,
        limit: float | None = None,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> str:
        """What the router does with an approved order: add it to the view, then submit."""
        self.n[0] += 1
        coid = f"O-{self.n[0]}"
        kind = OrderType.LIMIT if limit is not None else OrderType.MARKET
        req = OrderRequest(coid, self.clock.now_ns(), "AAA", side, qty, kind, limit, None, tif)
        self.working.add(coid, "AAA", side, qty, limit)
        self.venue.submit(req)
        return coid

    def bar(self, price: float = 100.0, volume: float = 1e6) -> None:
        self.clock.advance_ns(MINUTE)
        bar = Bar(self.clock.now_ns(), "AAA", price, price, price, price, volume)
        self.venue.on_bar(bar)
        self.portfolio.mark("AAA", price)

    def flushed(self, key: str) -> list[Any]:
        self.recorder.flush([], [])
        return self.capture.records(key)


def desk(strategy: Strategy | None = None, **costs: Any) -> Desk:
    clock = TestClock(T0)
    portfolio = Portfolio(CASH)
    working = WorkingOrders(portfolio.last_price)
    capture = BatchCapture()
    recorder = Recorder(capture, CASH)
    strategy = strategy if strategy is not None else Hooked()
    booker = ExecutionBooker(portfolio, working, recorder, strategy)
    venue = PaperBroker(PaperBrokerConfig(**costs), clock, booker)
    portfolio.mark("AAA", 100.0)
    return Desk(clock, portfolio, working, capture, recorder, strategy, booker, venue)


def test_a_fill_updates_the_view_the_portfolio_the_record_and_the_hook() -> None:
    d = desk(commission_bps=10.0, fee_per_order=1.0)
    coid = d.send(Side.BUY, 10.0)
    assert d.working.pending_qty("AAA") == 10.0

    d.bar(100.0)

    (fill,) = d.recorder.all_fills
    assert (fill.client_order_id, fill.quantity, fill.price) == (coid, 10.0, 100.0)
    assert fill.fee == pytest.approx(10.0 * 100.0 * 10 / 1e4 + 1.0)
    assert d.working.pending_qty("AAA") == 0.0 and coid not in d.working
    assert d.portfolio.position("AAA") == 10.0
    assert d.portfolio.cash == pytest.approx(CASH - 1000.0 - fill.fee)
    assert d.flushed("fills") == [fill]
    # the recorder has the account after the fill: cash at any later point is that cash
    d.recorder.flush([d.clock.now_ns()], [d.portfolio.equity()])
    _, _, cash, exposed = d.recorder.equity_curve()
    assert cash[-1] == pytest.approx(d.portfolio.cash) and exposed[-1]
    strategy = d.strategy
    assert isinstance(strategy, Hooked)
    assert strategy.fills == [fill]
    assert [e.status for e in strategy.events] == [OrderStatus.ACCEPTED, OrderStatus.FILLED]
    assert d.booker.status_counts == {OrderStatus.FILLED: 1}


def test_partial_fills_shrink_the_working_rest_and_count_once_at_the_end() -> None:
    d = desk(max_volume_pct=10.0)  # at most 10 % of a bar's volume per bar
    coid = d.send(Side.SELL, 25.0)

    d.bar(volume=100.0)  # 10 fill
    assert d.working.pending_qty("AAA") == -15.0 and d.booker.status_counts == {}
    d.bar(volume=100.0)  # 10 more
    assert [o.remaining for o in d.working.orders()] == [5.0]
    d.bar(volume=100.0)  # the last 5: FILLED

    assert [f.quantity for f in d.recorder.all_fills] == [10.0, 10.0, 5.0]
    assert coid not in d.working and d.working.pending_qty("AAA") == 0.0
    assert d.portfolio.position("AAA") == -25.0
    assert d.booker.status_counts == {OrderStatus.FILLED: 1}
    statuses = [e.status for e in d.flushed("events")]
    assert statuses == [OrderStatus.ACCEPTED] + [OrderStatus.PARTIALLY_FILLED] * 2 + [
        OrderStatus.FILLED
    ]


def test_terminal_events_release_the_working_quantity_and_are_counted() -> None:
    d = desk(max_volume_pct=10.0)
    cancelled = d.send(Side.BUY, 3.0, limit=90.0)  # rests under the market
    expired = d.send(Side.BUY, 4.0, limit=90.0, tif=TimeInForce.DAY)
    partly = d.send(Side.BUY, 30.0)  # 10 of it fills on the next bar, then it is cancelled
    rejected = d.send(Side.BUY, 5.0, limit=0.0)  # the venue refuses a limit price of 0
    assert rejected not in d.working, "refused at once: its REJECTED event released it"

    d.bar(100.0, volume=100.0)  # the DAY limit expires unfilled; 10 of the market buy fill
    assert expired not in d.working
    assert d.working.pending_qty("AAA") == 3.0 + 20.0
    d.venue.cancel(cancelled, "test")
    d.venue.cancel(partly, "test")

    assert d.working.pending_qty("AAA") == 0.0 and d.working.orders() == []
    assert d.portfolio.position("AAA") == 10.0
    assert d.booker.status_counts == {
        OrderStatus.REJECTED: 1,
        OrderStatus.EXPIRED: 1,
        OrderStatus.CANCELLED: 2,
    }
    terminal = [e for e in d.flushed("events") if e.status in TERMINAL_STATUSES]
    assert [e.client_order_id for e in terminal] == [rejected, expired, cancelled, partly]


def test_denials_are_counted_and_recorded() -> None:
    d = desk()
    denial = OrderDenied(T0, "O-9", "AAA", DenyReason.MAX_POSITION, "too big")

    d.booker.denied(denial)
    d.booker.denied(denial._replace(client_order_id="O-10"))

    assert d.booker.status_counts == {OrderStatus.DENIED: 2}
    assert d.recorder.denial_reasons == {"MAX_POSITION": 2}
    assert len(d.flushed("denials")) == 2


def test_a_strategy_without_hooks_is_booked_all_the_same() -> None:
    d = desk(Strategy())

    d.send(Side.BUY, 2.0)
    d.bar()

    assert d.portfolio.position("AAA") == 2.0 and d.booker.status_counts == {OrderStatus.FILLED: 1}


@pytest.mark.parametrize("hook", ["on_fill", "on_order_event"])
def test_a_raising_strategy_hook_becomes_a_strategy_error_after_booking(hook: str) -> None:
    d = desk(Hooked(raise_in=hook))
    if hook == "on_order_event":  # the ACCEPTED event of the submit raises already
        with pytest.raises(StrategyError, match=r"'hooked' raised in on_order_event: ValueError"):
            d.send(Side.BUY, 2.0)
        assert d.flushed("events")[0].status is OrderStatus.ACCEPTED, "recorded first"
        return
    d.send(Side.BUY, 2.0)

    with pytest.raises(
        StrategyError, match=r"strategy 'hooked' raised in on_fill: ValueError"
    ) as info:
        d.bar()

    assert isinstance(info.value.__cause__, ValueError)
    assert d.portfolio.position("AAA") == 2.0, "booked before the hook ran"
    assert len(d.recorder.all_fills) == 1


def test_a_strategy_error_from_a_hook_passes_unchanged() -> None:
    error = StrategyError("my own message")
    d = desk(Hooked(raise_in="on_fill", error=error))
    d.send(Side.BUY, 1.0)

    with pytest.raises(StrategyError) as info:
        d.bar()

    assert info.value is error


def test_strategy_hook_wraps_only_overridden_hooks() -> None:
    assert strategy_hook(Strategy(), "on_order_denied") is None
    raising = Hooked(raise_in="on_order_denied")
    call = strategy_hook(raising, "on_order_denied")
    assert call is not None
    denial = OrderDenied(T0, "O-1", "AAA", DenyReason.RATE_LIMITED, "slow down")

    with pytest.raises(StrategyError, match="raised in on_order_denied: ValueError"):
        call(denial)
    assert raising.denials == [denial]


def test_the_booker_declares_its_timing_point() -> None:
    d = desk()

    (point,) = d.booker.timing_points()

    assert (point.stage, point.owner, point.attr) == ("portfolio", d.booker, "_apply_fill")
