"""A venue that reports one execution twice (``engine/booking.py``): booked once, counted.

The venue is a real ``PaperBroker``; ``DuplicatingSink`` (the stress scenarios' injector)
delivers some fills a second time with the same fill id, as a resent execution report
would, and ``Resender`` keeps fills to deliver them again much later, after their orders
ended. Property: positions, cash, the recorded fills and the terminal states equal those
of the same order flow heard once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.core.clock import TestClock
from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, Fill, OrderEvent, OrderRequest
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.booking import DUPLICATE_FILL, ExecutionBooker
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.working import WorkingOrders
from ultrathink.execution.broker import ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import PaperBroker
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.stress.venue_faults import DuplicatingSink
from ultrathink.testing.engine import BatchCapture

T0 = 1_600_000_000_000_000_000
MINUTE = 60_000_000_000
CASH = 1_000_000.0


class Counting(Strategy):
    """Counts what its hooks receive (a repeat must not reach them either)."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.fills: list[Fill] = []

    def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)


class Resender:
    """An ``ExecutionSink`` that passes everything on and keeps every fill to resend later."""

    def __init__(self, inner: ExecutionSink) -> None:
        self.inner = inner
        self.kept: list[tuple[Fill, Order]] = []

    def on_order_event(self, event: OrderEvent) -> None:
        self.inner.on_order_event(event)

    def on_fill(self, fill: Fill, order: Order) -> None:
        self.kept.append((fill, order))
        self.inner.on_fill(fill, order)

    def resend(self) -> None:
        for fill, order in self.kept:
            self.inner.on_fill(fill, order)


class EventFirst:
    """An ``ExecutionSink`` that reports an order's status before the fill that caused it
    (a venue may send the status ahead of the execution report)."""

    def __init__(self, inner: ExecutionSink) -> None:
        self.inner = inner
        self._held: list[Fill] = []

    def on_order_event(self, event: OrderEvent) -> None:
        self.inner.on_order_event(event)

    def on_fill(self, fill: Fill, order: Order) -> None:
        # the venue has already moved the order; the event for it comes right after
        self._order = order
        self._held.append(fill)

    def release(self) -> None:
        for fill in self._held:
            self.inner.on_fill(fill, self._order)
        self._held.clear()


@dataclass
class Desk:
    clock: TestClock
    portfolio: Portfolio
    working: WorkingOrders
    capture: BatchCapture
    recorder: Recorder
    strategy: Counting
    booker: ExecutionBooker
    venue: PaperBroker
    sinks: list[Any] = field(default_factory=list)
    n: int = 0

    def send(self, side: Side, qty: float, limit: float | None = None) -> str:
        """What the router does with an approved order: add it to the view, then submit."""
        self.n += 1
        coid = f"O-{self.n}"
        kind = OrderType.LIMIT if limit is not None else OrderType.MARKET
        tif = TimeInForce.GTC
        req = OrderRequest(coid, self.clock.now_ns(), "AAA", side, qty, kind, limit, None, tif)
        self.working.add(coid, "AAA", side, qty, limit)
        self.venue.submit(req)
        return coid

    def bar(self, price: float, volume: float) -> None:
        self.clock.advance_ns(MINUTE)
        bar = Bar(self.clock.now_ns(), "AAA", price, price * 1.01, price * 0.99, price, volume)
        self.venue.on_bar(bar)
        self.portfolio.mark("AAA", price)

    def state(self) -> tuple[Any, ...]:
        self.recorder.flush([], [])
        return (
            self.portfolio.position("AAA"),
            self.portfolio.cash,
            self.recorder.all_fills,
            self.capture.records("fills"),
            self.booker.status_counts,
            self.working.pending_qty("AAA"),
            self.strategy.fills,
        )


def desk(wrap: Any = None, **costs: Any) -> Desk:
    clock = TestClock(T0)
    portfolio = Portfolio(CASH)
    working = WorkingOrders(portfolio.last_price)
    capture = BatchCapture()
    recorder = Recorder(capture, CASH)
    strategy = Counting()
    booker = ExecutionBooker(portfolio, working, recorder, strategy)
    sink = wrap(booker) if wrap is not None else booker
    venue = PaperBroker(PaperBrokerConfig(**costs), clock, sink)
    portfolio.mark("AAA", 100.0)
    return Desk(clock, portfolio, working, capture, recorder, strategy, booker, venue, [sink])


def test_a_fill_reported_twice_is_booked_once_counted_and_audited() -> None:
    d = desk(lambda inner: DuplicatingSink(inner, rate=1.0, seed=1), commission_bps=5.0)
    clean = desk(commission_bps=5.0)
    for x in (d, clean):
        x.send(Side.BUY, 10.0)
        x.bar(100.0, 1e6)

    assert d.state() == clean.state()
    assert d.portfolio.position("AAA") == 10.0
    assert d.booker.n_duplicate_fills == 1 and clean.booker.n_duplicate_fills == 0
    ((_ts, _kind, detail),) = d.capture.audit(DUPLICATE_FILL)
    assert detail.startswith("O-1-F1 of O-1 (BUY 10 AAA @ 100) reported again")
    assert "dropped, not booked twice" in detail
    assert d.booker.tracked_orders == 0, "the order ended: its fill ids are forgotten"


def test_a_late_repeat_after_the_order_ended_is_still_recognised() -> None:
    d = desk(Resender, max_volume_pct=10.0)  # partial fills: 10 % of a bar's volume
    d.send(Side.SELL, 25.0)
    d.send(Side.BUY, 5.0)
    for _ in range(4):
        d.bar(100.0, 100.0)
    before = d.state()
    assert d.booker.status_counts == {OrderStatus.FILLED: 2}
    assert d.booker.tracked_orders == 0, "both ended: nothing kept per order"

    resender = d.sinks[0]
    resender.resend()  # every fill again, long after: ids forgotten, orders ended
    d.bar(100.0, 100.0)

    assert d.state() == before
    assert d.booker.n_duplicate_fills == len(resender.kept) == 4
    details = [r[2] for r in d.capture.audit(DUPLICATE_FILL)]
    assert all("its order had ended, every fill booked" in x for x in details)


def test_a_repeat_of_a_partial_fill_while_the_order_works_is_dropped_by_its_id() -> None:
    d = desk(Resender, max_volume_pct=10.0)
    d.send(Side.BUY, 30.0)
    d.bar(100.0, 100.0)  # 10 of 30
    resender = d.sinks[0]

    resender.resend()  # the partial fill again while its order is still working

    assert d.portfolio.position("AAA") == 10.0 and d.working.pending_qty("AAA") == 20.0
    assert d.booker.n_duplicate_fills == 1 and d.booker.tracked_orders == 1
    d.recorder.flush([], [])
    assert "this fill id was booked already" in d.capture.audit(DUPLICATE_FILL)[0][2]
    d.bar(100.0, 100.0)
    d.bar(100.0, 100.0)
    assert d.portfolio.position("AAA") == 30.0 and d.booker.tracked_orders == 0


def test_a_status_reported_ahead_of_its_fill_does_not_lose_the_fill() -> None:
    d = desk(EventFirst)
    clean = desk()
    for x in (d, clean):
        x.send(Side.BUY, 10.0)
        x.bar(100.0, 1e6)
    d.sinks[0].release()  # the FILLED event came first; the execution report now

    assert d.portfolio.position("AAA") == 10.0 == clean.portfolio.position("AAA")
    assert d.portfolio.cash == clean.portfolio.cash
    assert d.booker.n_duplicate_fills == 0 and d.booker.tracked_orders == 0
    d.sinks[0]._held.append(d.recorder.all_fills[0])
    d.sinks[0].release()  # and a repeat of it afterwards is recognised
    assert d.portfolio.position("AAA") == 10.0 and d.booker.n_duplicate_fills == 1


# one step of order flow: a market or limit order of some size, or a bar
_step = st.one_of(
    st.tuples(st.just("send"), st.sampled_from(Side), st.integers(1, 400).map(float),
              st.none() | st.floats(95.0, 105.0)),
    st.tuples(st.just("bar"), st.floats(90.0, 110.0), st.sampled_from([50.0, 300.0, 1e6])),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(_step, min_size=1, max_size=40),
    rate=st.sampled_from([0.1, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
    costs=st.sampled_from([{}, {"commission_bps": 5.0, "fee_per_order": 1.0}]),
)
def test_positions_and_cash_equal_those_of_the_flow_heard_once(
    steps: list[Any], rate: float, seed: int, costs: dict[str, float]
) -> None:
    """Any order flow, partial fills (10 % of volume), fills repeated at once or much later:
    the booked state is the flow's heard once, every repeat counted."""
    dup = desk(lambda inner: Resender(DuplicatingSink(inner, rate, seed)),
               max_volume_pct=10.0, **costs)  # fmt: skip
    clean = desk(max_volume_pct=10.0, **costs)
    for step in steps + [("bar", 100.0, 1e6)] * 3:
        for x in (dup, clean):
            if step[0] == "send":
                x.send(step[1], step[2], step[3])
            else:
                x.bar(step[1], step[2])
    resender = dup.sinks[0]
    resender.resend()  # late repeats of every fill too
    duplicating = resender.inner

    assert dup.state() == clean.state()
    assert dup.booker.n_duplicate_fills == len(duplicating.duplicated) + len(resender.kept)
    assert len(dup.capture.audit(DUPLICATE_FILL)) == dup.booker.n_duplicate_fills
    assert dup.booker.tracked_orders == len(
        {o.client_order_id for o in dup.working.orders()}
        & {f.client_order_id for f in dup.recorder.all_fills}
    ), "only orders still working with fills keep their ids"
    assert dup.booker.tracked_orders <= dup.working.n_open_orders()


@pytest.mark.parametrize("late", [False, True])
def test_a_repeat_never_reaches_the_strategy_hook(late: bool) -> None:
    d = desk(Resender)
    d.send(Side.BUY, 3.0)
    d.bar(100.0, 1e6)
    if late:
        d.bar(101.0, 1e6)
    d.sinks[0].resend()

    assert len(d.strategy.fills) == 1 and d.booker.n_duplicate_fills == 1
