"""The ``Broker`` contract suite (``execution/broker.py``, ``execution/orders.py``)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ultrathink.core.clock import Clock
from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Fill
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.orders import Order
from ultrathink.testing.contracts._teardown import Teardown
from ultrathink.testing.fakes import Venue

S = OrderStatus
_EPS = 1e-9
#: the order state machine of ``execution/orders.py``, restated: the contract is the spec
LEGAL_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.NEW: frozenset({S.ACCEPTED, S.REJECTED}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED, S.REJECTED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.EXPIRED}),
}
_FILLABLE = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})
_INVALID: dict[str, dict[str, Any]] = {
    "zero-quantity": {"quantity": 0.0},
    "negative-quantity": {"quantity": -5.0},
    "nan-quantity": {"quantity": math.nan},
    "limit-without-price": {"order_type": OrderType.LIMIT},
    "limit-at-zero": {"order_type": OrderType.LIMIT, "limit_price": 0.0},
    "stop-without-price": {"order_type": OrderType.STOP},
}


class BrokerContract(Teardown, ABC):
    """The ``Broker`` contract (``execution/broker.py``; orders: ``execution/orders.py``).

    Submits are validated and idempotent by client order id, cancels answer whether they
    happened, ``open_orders`` filters by symbol in submission order, fills never exceed the
    order quantity, positions are the signed sum of fills, and every order's events follow
    the state machine. A venue that never fills on bars (a real adapter) sets
    ``fills_on_bars = False``: the tests that need fills are skipped.
    """

    fills_on_bars: ClassVar[bool] = True

    @abstractmethod
    def make_broker(self, clock: Clock, sink: ExecutionSink, tmp_path: Path) -> Broker:
        """A new, empty broker on ``clock`` reporting to ``sink``; its files go in ``tmp_path``."""

    @pytest.fixture
    def venue(self, _teardown: None, tmp_path: Path) -> Venue[Broker]:
        """The broker under test with its clock and a ``RecordingSink``."""
        return Venue(lambda clock, sink: self.make_broker(clock, sink, tmp_path))

    def _needs_fills(self) -> None:
        if not self.fills_on_bars:
            pytest.skip("this broker never fills on bars")

    def test_a_valid_request_is_accepted_and_visible(self, venue: Venue[Broker]) -> None:
        venue.bar(0)
        order = venue.submit("A", 10.0)
        got = venue.broker.get_order("A")
        assert venue.sink.statuses("A") == [S.ACCEPTED]
        assert order.status is S.ACCEPTED and order.is_open
        assert got is not None and (got.client_order_id, got.status) == ("A", S.ACCEPTED)
        assert (got.symbol, got.side, got.quantity) == ("AAA", Side.BUY, 10.0)
        assert _ids(venue.broker.open_orders()) == ["A"] == _ids(venue.broker.open_orders("AAA"))
        assert venue.broker.get_order("never-sent") is None

    @pytest.mark.parametrize("fields", list(_INVALID.values()), ids=list(_INVALID))
    def test_an_invalid_request_ends_rejected_with_a_reason(
        self, venue: Venue[Broker], fields: dict[str, Any]
    ) -> None:
        venue.bar(0)
        order = venue.submit("X", **fields)
        events, got = venue.sink.events_of("X"), venue.broker.get_order("X")
        assert events and events[-1].status is S.REJECTED and events[-1].reason
        assert order.status is S.REJECTED and not order.is_open
        assert got is not None and got.status is S.REJECTED
        assert venue.broker.open_orders() == [] and venue.sink.fills == []

    def test_a_repeated_client_order_id_creates_nothing(self, venue: Venue[Broker]) -> None:
        venue.bar(0)
        venue.submit("A", 10.0)
        venue.submit("R", 0.0)
        n_events = len(venue.sink.events)
        again = venue.submit("A", 25.0, symbol="BBB")
        rejected_again = venue.submit("R", 5.0)
        assert (again.client_order_id, again.symbol, again.quantity) == ("A", "AAA", 10.0)
        assert rejected_again.status is S.REJECTED
        assert len(venue.sink.events) == n_events
        assert _ids(venue.broker.open_orders()) == ["A"]

    def test_cancel_of_a_working_order_reports_cancelled(self, venue: Venue[Broker]) -> None:
        venue.bar(0)
        venue.submit("A")
        assert venue.broker.cancel("A", "contract test") is True
        got = venue.broker.get_order("A")
        assert venue.sink.statuses("A") == [S.ACCEPTED, S.CANCELLED]
        assert venue.sink.events_of("A")[-1].reason
        assert got is not None and got.status is S.CANCELLED and not got.is_open
        assert venue.broker.open_orders() == []

    def test_cancel_of_an_unknown_or_terminal_order_is_false(self, venue: Venue[Broker]) -> None:
        venue.bar(0)
        venue.submit("R", 0.0)
        venue.submit("C")
        venue.broker.cancel("C", "first")
        n_events = len(venue.sink.events)
        assert [venue.broker.cancel(c, "again") for c in ("never-sent", "R", "C")] == [False] * 3
        assert len(venue.sink.events) == n_events

    def test_open_orders_of_a_symbol_keep_submission_order(self, venue: Venue[Broker]) -> None:
        _interleaved(venue)
        assert _ids(venue.broker.open_orders("AAA")) == ["A1", "A3"]
        assert _ids(venue.broker.open_orders("BBB")) == ["B1", "B2"]
        assert venue.broker.open_orders("ZZZ") == []

    def test_open_orders_of_all_symbols_keep_submission_order(self, venue: Venue[Broker]) -> None:
        _interleaved(venue)
        assert _ids(venue.broker.open_orders()) == ["A1", "B1", "B2", "A3"]

    def test_a_broker_with_working_orders_wants_bars(self, venue: Venue[Broker]) -> None:
        self._needs_fills()
        venue.bar(0)
        venue.submit("A")
        assert venue.broker.wants_bars  # the kernel calls on_bar only when it does

    def test_a_market_order_fills_on_a_later_bar_of_its_symbol(self, venue: Venue[Broker]) -> None:
        self._needs_fills()
        venue.bar(0)
        venue.submit("A", 10.0)
        venue.bar(0, symbol="BBB")
        venue.bar(1, symbol="BBB")
        assert venue.sink.fills == []  # neither its own bar nor another symbol's
        bars = {bar.ts_ns: bar for bar in (venue.bar(i) for i in range(1, 6))}
        fills, got = venue.sink.fills_of("A"), venue.broker.get_order("A")
        assert fills and sum(f.quantity for f in fills) == pytest.approx(10.0)
        assert all(bars[f.ts_ns].low <= f.price <= bars[f.ts_ns].high for f in fills)
        assert got is not None and got.status is S.FILLED and got.filled_qty == pytest.approx(10)
        assert venue.broker.open_orders() == []

    def test_fills_never_exceed_the_order_quantity(self, venue: Venue[Broker]) -> None:
        self._needs_fills()
        venue.bar(0)
        venue.submit("A", 12.0)
        venue.submit("B", 7.0, side=Side.SELL)
        for i in range(1, 12):
            venue.bar(i, volume=50.0)  # thin bars: a venue with a liquidity cap fills in parts
        running: dict[str, float] = {}
        expected_at_fill = []
        for fill in venue.sink.fills:
            assert fill.quantity > 0
            running[fill.client_order_id] = running.get(fill.client_order_id, 0.0) + fill.quantity
            expected_at_fill.append(running[fill.client_order_id])
        for coid, quantity in (("A", 12.0), ("B", 7.0)):
            got = venue.broker.get_order(coid)
            assert 0 < running.get(coid, 0.0) <= quantity + _EPS
            assert got is not None and got.filled_qty == pytest.approx(running[coid])
        # the sink sees each fill already counted in its order
        assert venue.sink.order_filled_at_fill == pytest.approx(expected_at_fill)
        assert len({f.fill_id for f in venue.sink.fills}) == len(venue.sink.fills)

    def test_positions_are_the_signed_sum_of_fills(self, venue: Venue[Broker]) -> None:
        _session(venue)
        signed: dict[str, float] = {}
        for f in venue.sink.fills:
            signed[f.symbol] = signed.get(f.symbol, 0.0) + f.side.sign * f.quantity
        expected = {s: q for s, q in signed.items() if abs(q) > _EPS}
        got = venue.broker.positions()
        assert sorted(got) == sorted(expected) and all(q != 0.0 for q in got.values())
        assert all(got[s] == pytest.approx(q) for s, q in expected.items())

    def test_events_follow_the_order_state_machine(self, venue: Venue[Broker]) -> None:
        _session(venue)
        status: dict[str, OrderStatus] = {}
        filled: dict[str, float] = {}
        for item in venue.sink.log:
            coid, now = item.client_order_id, status.get(item.client_order_id, S.NEW)
            if isinstance(item, Fill):
                assert now in _FILLABLE, f"{coid} filled while {now}"
                filled[coid] = filled.get(coid, 0.0) + item.quantity
                continue
            assert item.status in LEGAL_TRANSITIONS.get(now, ()), f"{coid}: {now} -> {item.status}"
            assert item.filled_qty == pytest.approx(filled.get(coid, 0.0)), f"{coid}: {item}"
            status[coid] = item.status
        for coid, last in status.items():
            got = venue.broker.get_order(coid)
            assert got is not None and got.status is last and got.is_open == (last in _FILLABLE)


def _ids(orders: list[Order]) -> list[str]:
    return [o.client_order_id for o in orders]


def _interleaved(venue: Venue[Broker]) -> None:
    venue.bar(0)
    for coid in ("A1", "B1", "A2", "B2", "A3"):
        venue.submit(coid, symbol="AAA" if coid[0] == "A" else "BBB")
    venue.broker.cancel("A2", "contract test")


def _session(venue: Venue[Broker]) -> None:
    # every order type and fate, two symbols, thin bars then deep ones, then AAA goes flat
    limit, stop = OrderType.LIMIT, OrderType.STOP
    venue.bar(0)
    venue.bar(0, symbol="BBB")
    venue.submit("MKT", 10.0)
    venue.submit("SHORT", 4.0, symbol="BBB", side=Side.SELL)
    venue.submit("FAR", 5.0, order_type=limit, limit_price=50.0)
    venue.submit("LMT", 5.0, order_type=limit, limit_price=99.5)
    venue.submit("STP", 3.0, side=Side.SELL, order_type=stop, stop_price=99.5)
    venue.submit("DAY", 2.0, order_type=limit, limit_price=50.0, tif=TimeInForce.DAY)
    venue.submit("BAD", 0.0)
    venue.submit("PART", 30.0)  # cancelled after a bar: partly filled where liquidity is capped
    venue.broker.cancel("FAR", "contract session")
    for i in range(1, 16):
        volume = 50.0 if i < 6 else 1e9
        venue.bar(i, volume=volume)
        venue.bar(i, volume=volume, symbol="BBB")
        if i == 1:
            venue.broker.cancel("PART", "contract session")
    held = venue.broker.positions().get("AAA", 0.0)
    if held:
        venue.submit("EXIT", abs(held), side=Side.SELL if held > 0 else Side.BUY)
    venue.bar(16)
    venue.bar(17)
