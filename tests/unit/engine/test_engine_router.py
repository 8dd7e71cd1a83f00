"""The order router (``engine/router.py``) with real components around it.

A real ``RiskEngine``, a real ``PaperBroker`` (wrapped in a seeded ``FaultyBroker`` where the
venue must fail), the engine's ``ExecutionBooker``, ``Portfolio``, ``WorkingOrders`` and
``Recorder``, real circuit breakers and a real rate limiter, on a ``TestClock``. Every gate
that may refuse an order is exercised on its own, with the reason code it must give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ultrathink.core.bus import MessageBus
from ultrathink.core.clock import TestClock
from ultrathink.core.enums import DenyReason, OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, OrderDenied
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.booking import ExecutionBooker
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.router import RISK_FAILURE, OrderRouter
from ultrathink.engine.working import WorkingOrders
from ultrathink.execution.broker import Broker
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import PaperBroker
from ultrathink.hardening.breaker import BreakerConfig, BreakerState, CircuitBreaker
from ultrathink.hardening.rate_limit import OrderRateLimiter, RateLimitConfig, RateWindow
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.config import RiskConfig
from ultrathink.risk.engine import RiskEngine
from ultrathink.stress import FaultyBroker, FaultyCall
from ultrathink.testing.engine import BatchCapture

T0 = 1_600_000_000_000_000_000
SECOND = 1_000_000_000
CASH = 100_000.0
PRICE = 100.0
NEVER_RECEIVED = "the broker never received it (submit failed)"


@dataclass
class Rig:
    """One router and the real components around it."""

    clock: TestClock
    bus: MessageBus
    portfolio: Portfolio
    working: WorkingOrders
    risk: RiskEngine
    capture: BatchCapture
    recorder: Recorder
    booker: ExecutionBooker
    paper: PaperBroker
    broker: Broker
    router: OrderRouter
    risk_breaker: CircuitBreaker | None
    execution_breaker: CircuitBreaker | None
    denied: list[OrderDenied] = field(default_factory=list)

    def buy(self, qty: float = 10.0, symbol: str = "AAA", **kw: Any) -> str:
        return self.order(Side.BUY, qty, symbol, **kw)

    def order(
        self,
        side: Side,
        qty: float,
        symbol: str = "AAA",
        *,
        limit: float | None = None,
        reduce_only: bool = False,
        tag: str = "",
    ) -> str:
        kind = OrderType.LIMIT if limit is not None else OrderType.MARKET
        return self.router.submit(
            symbol, side, qty, kind, limit, None, TimeInForce.GTC, reduce_only, tag
        )

    def bar(self, close: float = PRICE, symbol: str = "AAA", dt_s: int = 60) -> None:
        """The next bar: the clock moves, the venue matches, the portfolio marks."""
        self.clock.advance_ns(dt_s * SECOND)
        bar = Bar(self.clock.now_ns(), symbol, close, close * 1.01, close * 0.99, close, 1e6)
        self.broker.on_bar(bar)
        self.portfolio.mark(symbol, close)

    def flushed(self, key: str) -> list[Any]:
        self.recorder.flush([], [])
        return self.capture.records(key)


def rig(
    *,
    risk_config: RiskConfig | None = None,
    risk_breaker: bool = False,
    execution_breaker: bool = False,
    rate_limits: RateLimitConfig | None = None,
    wrap: Callable[[PaperBroker], Broker] | None = None,
    marked: bool = True,
) -> Rig:
    clock = TestClock(T0)
    bus = MessageBus()
    portfolio = Portfolio(CASH)
    working = WorkingOrders(portfolio.last_price)
    risk = RiskEngine(risk_config or RiskConfig(), portfolio, working)
    capture = BatchCapture()
    recorder = Recorder(capture, CASH)
    booker = ExecutionBooker(portfolio, working, recorder, Strategy())
    paper = PaperBroker(PaperBrokerConfig(), clock, booker)
    broker: Broker = wrap(paper) if wrap is not None else paper
    rb = CircuitBreaker(BreakerConfig(name="risk"), clock) if risk_breaker else None
    eb = None
    if execution_breaker:
        eb = CircuitBreaker(BreakerConfig(name="execution", failure_threshold=1), clock)
    limiter = OrderRateLimiter(rate_limits, clock) if rate_limits is not None else None
    denied: list[OrderDenied] = []
    router = OrderRouter(
        clock, recorder, working, risk, broker, booker, bus,
        risk_breaker=rb, execution_breaker=eb, rate_limiter=limiter, on_denied=denied.append,
    )  # fmt: skip
    if marked:
        portfolio.mark("AAA", PRICE)
    return Rig(
        clock, bus, portfolio, working, risk, capture, recorder, booker, paper, broker, router,
        rb, eb, denied,
    )  # fmt: skip


def test_an_approved_order_reaches_the_broker_and_works() -> None:
    r = rig()

    coid = r.buy(10.0, tag="entry")

    order = r.paper.get_order(coid)
    assert order is not None and order.status is OrderStatus.ACCEPTED
    assert (order.side, order.quantity, order.tag) == (Side.BUY, 10.0, "entry")
    assert r.working.pending_qty("AAA") == 10.0 and coid in r.working
    assert r.denied == [] and r.risk.n_approved == 1
    assert [q.client_order_id for q in r.flushed("requests")] == [coid]
    assert r.capture.records("approvals") == [coid]
    r.bar()  # the next bar fills it
    assert r.portfolio.position("AAA") == 10.0 and r.working.pending_qty("AAA") == 0.0


def test_a_risk_denial_is_booked_and_reported_and_nothing_is_sent() -> None:
    r = rig(marked=False)

    coid = r.buy(10.0)

    (denied,) = r.denied
    assert (denied.client_order_id, denied.reason) == (coid, DenyReason.NO_MARKET_DATA)
    assert r.paper.get_order(coid) is None and coid not in r.working
    assert r.booker.status_counts == {OrderStatus.DENIED: 1}
    assert r.flushed("denials") == [denied] and r.capture.records("approvals") == []


def test_an_open_risk_breaker_denies_trading_halted_without_asking_risk() -> None:
    r = rig(risk_breaker=True)
    assert r.risk_breaker is not None
    r.risk_breaker.force_open("test")

    coid = r.buy(1.0)

    (denied,) = r.denied
    assert denied.reason is DenyReason.TRADING_HALTED
    assert denied.detail == "risk breaker is OPEN: no order passes unchecked"
    assert r.risk.n_approved == r.risk.n_denied == 0, "the check never ran"
    assert r.paper.get_order(coid) is None


def test_the_rate_limiter_denies_rate_limited_and_refills_with_the_clock() -> None:
    r = rig(rate_limits=RateLimitConfig(windows=(RateWindow(limit=2, per_s=1.0),)))

    ids = [r.buy(1.0) for _ in range(3)]

    assert [r.paper.get_order(c) is not None for c in ids] == [True, True, False]
    (denied,) = r.denied
    assert denied.client_order_id == ids[2] and denied.reason is DenyReason.RATE_LIMITED
    assert denied.detail.startswith("RATE_LIMITED: account limit 2 per 1 s exceeded")
    r.clock.advance_ns(SECOND)  # a full window later the bucket is full again
    assert r.paper.get_order(r.buy(1.0)) is not None


def test_a_risk_denial_takes_no_rate_limit_token() -> None:
    r = rig(rate_limits=RateLimitConfig(windows=(RateWindow(limit=1, per_s=1.0),)))

    r.buy(0.0)  # INVALID_ORDER: refused by risk before the limiter
    coid = r.buy(1.0)

    assert [d.reason for d in r.denied] == [DenyReason.INVALID_ORDER]
    assert r.paper.get_order(coid) is not None


def test_an_open_execution_breaker_denies_broker_unavailable_and_sends_nothing() -> None:
    r = rig(execution_breaker=True)
    assert r.execution_breaker is not None
    r.execution_breaker.force_open("venue down")

    coid = r.buy(1.0)

    (denied,) = r.denied
    assert denied.reason is DenyReason.BROKER_UNAVAILABLE
    assert "execution breaker is OPEN" in denied.detail
    assert r.paper.get_order(coid) is None and coid not in r.working
    assert r.booker.status_counts == {OrderStatus.DENIED: 1}


def test_a_raising_risk_check_without_a_breaker_publishes_risk_failure() -> None:
    r = rig()
    failures: list[str] = []
    r.bus.subscribe(RISK_FAILURE, failures.append)
    # a fault inside the real risk engine: its rules raise on the first call
    r.risk._check = FaultyCall(r.risk._check, at={0})  # type: ignore[method-assign]

    first = r.buy(1.0)
    second = r.buy(1.0)

    (denied,) = r.denied
    assert (denied.client_order_id, denied.reason) == (first, DenyReason.TRADING_HALTED)
    assert denied.detail.startswith("risk check failed: InjectedFault(")
    assert failures == [denied.detail], "the kill switch listens on risk.failure"
    assert r.paper.get_order(first) is None
    assert r.paper.get_order(second) is not None, "the router itself halts nothing"


def test_a_raising_risk_check_with_a_breaker_opens_it_instead() -> None:
    r = rig(risk_breaker=True)
    failures: list[str] = []
    r.bus.subscribe(RISK_FAILURE, failures.append)
    assert r.risk_breaker is not None
    r.risk._check = FaultyCall(r.risk._check, at={0, 1, 2})  # type: ignore[method-assign]

    for _ in range(4):
        r.buy(1.0)

    assert [d.reason for d in r.denied] == [DenyReason.TRADING_HALTED] * 4
    assert [d.detail.split(":")[0] for d in r.denied] == ["risk check failed"] * 3 + [
        "risk breaker is OPEN"
    ]
    assert r.risk_breaker.state is BreakerState.OPEN and failures == []


def test_a_submit_that_never_reached_the_venue_is_queried_and_rejected() -> None:
    r = rig(
        execution_breaker=True,
        wrap=lambda b: FaultyBroker(b, fail_rate=1.0, seed=1, mode="before"),
    )

    coid = r.buy(5.0)

    assert r.paper.get_order(coid) is None
    assert coid not in r.working and r.working.pending_qty("AAA") == 0.0
    assert r.booker.status_counts == {OrderStatus.REJECTED: 1}
    (event,) = r.flushed("events")
    assert (event.client_order_id, event.status, event.reason) == (
        coid, OrderStatus.REJECTED, NEVER_RECEIVED,
    )  # fmt: skip
    kinds = [k for _, k, _ in r.capture.audit()]
    assert kinds == ["execution.submit_failed"]
    assert not r.router.has_unknown_orders
    assert r.execution_breaker is not None and r.execution_breaker.state is BreakerState.OPEN


def test_a_submit_whose_answer_was_lost_is_queried_and_adopted() -> None:
    r = rig(
        execution_breaker=True,
        wrap=lambda b: FaultyBroker(b, fail_rate=1.0, seed=1, mode="after"),
    )

    coid = r.buy(5.0)

    order = r.paper.get_order(coid)
    assert order is not None and order.status is OrderStatus.ACCEPTED
    assert r.working.pending_qty("AAA") == 5.0, "adopted: it works like any other order"
    assert OrderStatus.REJECTED not in r.booker.status_counts
    r.flushed("events")
    adopted = [d for _, k, d in r.capture.audit() if k == "execution.adopted"]
    assert adopted == [f"{coid}: the broker has it (ACCEPTED)"]
    r.bar()
    assert r.portfolio.position("AAA") == 5.0, "and fills once, never sent twice"
    assert r.paper.positions() == {"AAA": 5.0}


class QueryOutage(FaultyBroker):
    """Submits always fail before the venue; the first ``n`` order queries raise too."""

    def __init__(self, inner: Broker, n: int) -> None:
        super().__init__(inner, fail_rate=1.0, seed=1, mode="before")
        self.query_faults = n

    def get_order(self, client_order_id: str) -> Order | None:
        if self.query_faults:
            self.query_faults -= 1
            raise ConnectionError("venue unreachable")
        return super().get_order(client_order_id)


def test_an_unanswered_query_is_asked_again_until_the_broker_answers() -> None:
    r = rig(execution_breaker=True, wrap=lambda b: QueryOutage(b, n=1))

    coid = r.buy(5.0)

    assert r.router.has_unknown_orders and r.booker.status_counts == {}
    assert coid in r.working, "its fate is unknown: it still counts as working"
    r.router.resolve_unknown_orders()  # the guards do this at the next bar
    assert not r.router.has_unknown_orders
    assert r.booker.status_counts == {OrderStatus.REJECTED: 1} and coid not in r.working
    r.flushed("events")
    kinds = [k for _, k, _ in r.capture.audit()]
    assert kinds == ["execution.submit_failed", "execution.query_failed"]


def test_flatten_orders_bypass_risk_and_the_breakers_and_are_audited() -> None:
    r = rig(risk_breaker=True)
    r.buy(10.0)
    r.bar()
    assert r.portfolio.position("AAA") == 10.0 and r.risk_breaker is not None
    r.risk_breaker.force_open("risk component down")
    checked = r.risk.n_approved + r.risk.n_denied
    r.flushed("requests")
    r.capture.batches.clear()

    coid = r.router.submit_flatten("AAA", -10.0, "kill switch: test")

    order = r.paper.get_order(coid)
    assert order is not None and order.status is OrderStatus.ACCEPTED
    assert (order.side, order.quantity, order.order_type) == (Side.SELL, 10.0, OrderType.MARKET)
    assert order.reduce_only and order.tag == "kill_switch"
    assert r.risk.n_approved + r.risk.n_denied == checked and r.denied == []
    (request,) = r.flushed("requests")
    assert (request.client_order_id, request.reduce_only) == (coid, True)
    assert r.capture.records("approvals") == [coid]
    audit = [(k, d) for _, k, d in r.capture.audit()]
    assert audit == [("killswitch.flatten", f"{coid} SELL 10 AAA: kill switch: test")]
    r.bar()
    assert r.portfolio.position("AAA") == 0.0


def test_cancels_go_through_the_execution_breaker() -> None:
    r = rig(
        execution_breaker=True,
        wrap=lambda b: FaultyBroker(b, fail_rate=0.0, seed=1, mode="before"),
    )
    faulty = r.broker
    assert isinstance(faulty, FaultyBroker)
    resting = [r.buy(1.0, limit=95.0) for _ in range(3)]

    faulty.fail_rate = 1.0  # the venue fails every call from now on
    assert r.router.cancel_order(resting[0], "test") is False
    assert resting[0] in r.working, "a failed cancel leaves the order working"
    r.flushed("events")
    failed = [d for _, k, d in r.capture.audit() if k == "execution.cancel_failed"]
    assert len(failed) == 1 and failed[0].startswith(f"{resting[0]}: BrokerError(")
    assert r.execution_breaker is not None and r.execution_breaker.state is BreakerState.OPEN
    faulty.fail_rate = 0.0  # the outage ends: the cancel is tried again and works
    assert r.router.cancel_all("AAA", "done") == 3
    assert r.working.orders() == [] and r.paper.open_orders() == []
    assert r.booker.status_counts == {OrderStatus.CANCELLED: 3}


def test_client_order_ids_are_deterministic_and_count_every_request() -> None:
    def ids() -> list[str]:
        r = rig(risk_config=RiskConfig(max_open_orders=2))
        out = [r.buy(1.0), r.buy(0.0), r.buy(1.0), r.buy(1.0)]  # 2nd invalid, 4th too many
        out.append(r.router.submit_flatten("AAA", 1.0, "x"))
        assert r.router.n_orders == 5
        assert [d.client_order_id for d in r.denied] == [out[1], out[3]]
        return out

    first = ids()
    assert first == [f"O-{i:09d}" for i in range(1, 6)]
    assert ids() == first, "the same run gives the same ids"


def test_the_router_declares_its_timing_points() -> None:
    r = rig()

    points = {(p.stage, p.attr) for p in r.router.timing_points()}

    assert points == {("risk", "_check"), ("execution", "_submit"), ("execution", "_cancel")}
    for p in r.router.timing_points():
        assert callable(getattr(p.owner, p.attr))


@pytest.mark.parametrize("reduce_only", [False, True])
def test_reduce_only_requests_reach_risk_as_such(reduce_only: bool) -> None:
    r = rig()

    coid = r.order(Side.SELL, 1.0, reduce_only=reduce_only)  # flat: a sell opens a short

    if reduce_only:
        assert [d.reason for d in r.denied] == [DenyReason.REDUCE_ONLY]
        assert r.paper.get_order(coid) is None
    else:
        assert r.denied == [] and r.working.pending_qty("AAA") == -1.0
