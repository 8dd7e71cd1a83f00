"""The order state machine: allowed transitions, forbidden ones, fills and is_open."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import OrderEvent, OrderRequest
from ultrathink.errors import InvalidTransition, OrderError
from ultrathink.execution.orders import Order

S = OrderStatus


def make_order(quantity: float = 10.0, side: Side = Side.BUY, ts_ns: int = 100) -> Order:
    return Order(OrderRequest("O-1", ts_ns, "AAA", side, quantity))


def order_in(status: OrderStatus, quantity: float = 10.0) -> Order:
    """An order driven through real transitions to ``status``."""
    order = make_order(quantity)
    if status is S.NEW:
        return order
    if status is S.REJECTED:
        order.reject(1, "bad")
        return order
    order.accept(1)
    if status is S.ACCEPTED:
        return order
    if status is S.CANCELLED:
        order.cancel(2, "user")
    elif status is S.EXPIRED:
        order.expire(2, "day over")
    elif status is S.PARTIALLY_FILLED:
        order.fill(2, quantity / 2, 10.0)
    elif status is S.FILLED:
        order.fill(2, quantity, 10.0)
    assert order.status is status
    return order


# each transition method and the status it targets
MOVES: dict[str, Callable[[Order], OrderEvent]] = {
    "accept": lambda o: o.accept(5),
    "reject": lambda o: o.reject(5, "r"),
    "cancel": lambda o: o.cancel(5, "c"),
    "expire": lambda o: o.expire(5, "e"),
    "partial_fill": lambda o: o.fill(5, min(1.0, o.remaining_qty / 2) or 1.0, 10.0),
    "full_fill": lambda o: o.fill(5, o.remaining_qty or 1.0, 10.0),
}
TARGET = {
    "accept": S.ACCEPTED,
    "reject": S.REJECTED,
    "cancel": S.CANCELLED,
    "expire": S.EXPIRED,
    "partial_fill": S.PARTIALLY_FILLED,
    "full_fill": S.FILLED,
}
ALLOWED = {
    (S.NEW, "accept"),
    (S.NEW, "reject"),
    (S.ACCEPTED, "partial_fill"),
    (S.ACCEPTED, "full_fill"),
    (S.ACCEPTED, "cancel"),
    (S.ACCEPTED, "expire"),
    (S.ACCEPTED, "reject"),
    (S.PARTIALLY_FILLED, "partial_fill"),
    (S.PARTIALLY_FILLED, "full_fill"),
    (S.PARTIALLY_FILLED, "cancel"),
    (S.PARTIALLY_FILLED, "expire"),
}
REACHABLE = [S.NEW, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED]
ALL_PAIRS = [(status, move) for status in REACHABLE for move in MOVES]
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def test_new_order_copies_the_request_and_starts_open() -> None:
    req = OrderRequest(
        "O-9", 7, "BBB", Side.SELL, 3.0, OrderType.LIMIT, 12.5, None, TimeInForce.DAY, True, "t"
    )

    order = Order(req)

    assert (order.client_order_id, order.ts_ns, order.symbol) == ("O-9", 7, "BBB")
    assert (order.side, order.quantity, order.order_type) == (Side.SELL, 3.0, OrderType.LIMIT)
    assert (order.limit_price, order.stop_price, order.tif) == (12.5, None, TimeInForce.DAY)
    assert (order.reduce_only, order.tag) == (True, "t")
    assert order.status is S.NEW
    assert order.is_open
    assert order.filled_qty == 0.0
    assert order.remaining_qty == 3.0
    assert order.signed_remaining == -3.0
    assert not order.is_triggered
    assert order.eligible_ns == 7


def test_eligible_ns_can_be_set_explicitly() -> None:
    order = Order(OrderRequest("O-1", 100, "AAA", Side.BUY, 1.0), eligible_ns=150)

    assert order.eligible_ns == 150


@pytest.mark.parametrize(("status", "move"), sorted(ALLOWED, key=str))
def test_allowed_transition_returns_event_and_moves_status(status: OrderStatus, move: str) -> None:
    order = order_in(status)

    event = MOVES[move](order)

    assert order.status is TARGET[move]
    assert event.status is TARGET[move]
    assert event.ts_ns == 5
    assert event.client_order_id == "O-1"
    assert event.symbol == "AAA"
    assert event.filled_qty == order.filled_qty
    assert order.is_open == (not TARGET[move].is_terminal)


@pytest.mark.parametrize(("status", "move"), FORBIDDEN)
def test_forbidden_transition_raises_invalid_transition(status: OrderStatus, move: str) -> None:
    order = order_in(status)

    with pytest.raises(InvalidTransition):
        MOVES[move](order)

    assert order.status is status


def test_forbidden_transition_message_names_order_and_states() -> None:
    order = order_in(S.FILLED)

    with pytest.raises(InvalidTransition, match=r"O-1: FILLED -> CANCELLED"):
        order.cancel(5, "late")


def test_invalid_transition_is_an_order_error() -> None:
    assert issubclass(InvalidTransition, OrderError)


@pytest.mark.parametrize(
    ("method", "reason"), [("reject", "no funds"), ("cancel", "user"), ("expire", "DAY")]
)
def test_terminal_events_carry_the_reason(method: str, reason: str) -> None:
    order = order_in(S.ACCEPTED)

    event = getattr(order, method)(9, reason)

    assert event.reason == reason


def test_over_fill_raises_and_leaves_the_order_unchanged() -> None:
    order = order_in(S.ACCEPTED, quantity=10.0)

    with pytest.raises(InvalidTransition, match="fill quantity"):
        order.fill(5, 10.5, 10.0)

    assert order.filled_qty == 0.0
    assert order.status is S.ACCEPTED


def test_fill_after_partial_cannot_exceed_remaining() -> None:
    order = order_in(S.ACCEPTED, quantity=10.0)
    order.fill(5, 6.0, 10.0)

    with pytest.raises(InvalidTransition):
        order.fill(6, 4.5, 10.0)

    assert order.filled_qty == 6.0
    assert order.remaining_qty == 4.0


@pytest.mark.parametrize("quantity", [0.0, -1.0])
def test_non_positive_fill_raises(quantity: float) -> None:
    order = order_in(S.ACCEPTED)

    with pytest.raises(InvalidTransition):
        order.fill(5, quantity, 10.0)


def test_fill_within_epsilon_of_remaining_completes_at_exact_quantity() -> None:
    order = order_in(S.ACCEPTED, quantity=0.3)

    order.fill(5, 0.1, 10.0)
    order.fill(6, 0.2, 10.0)  # 0.1 + 0.2 != 0.3 in floating point

    assert order.status is S.FILLED
    assert order.filled_qty == 0.3
    assert order.remaining_qty == 0.0
    assert not order.is_open


def test_avg_fill_price_is_quantity_weighted_over_partial_fills() -> None:
    order = order_in(S.ACCEPTED, quantity=10.0)

    e1 = order.fill(1, 2.0, 100.0)
    e2 = order.fill(2, 3.0, 110.0)
    e3 = order.fill(3, 5.0, 90.0)

    assert order.avg_fill_price == pytest.approx((2 * 100 + 3 * 110 + 5 * 90) / 10)
    assert [e.status for e in (e1, e2, e3)] == [S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED]
    assert [e.filled_qty for e in (e1, e2, e3)] == [2.0, 5.0, 10.0]


def test_single_full_fill_sets_avg_price_to_fill_price() -> None:
    order = order_in(S.ACCEPTED, quantity=4.0)

    order.fill(1, 4.0, 12.34)

    assert order.avg_fill_price == 12.34


def test_signed_remaining_tracks_side_and_fills() -> None:
    buy = order_in(S.ACCEPTED, quantity=10.0)
    sell = Order(OrderRequest("O-2", 0, "AAA", Side.SELL, 8.0))
    sell.accept(1)

    buy.fill(2, 3.0, 1.0)
    sell.fill(2, 5.0, 1.0)

    assert buy.signed_remaining == 7.0
    assert sell.signed_remaining == -3.0


@pytest.mark.parametrize("status", REACHABLE)
def test_is_open_is_false_exactly_in_terminal_states(status: OrderStatus) -> None:
    order = order_in(status)

    assert order.is_open == (not status.is_terminal)


@given(
    quantity=st.floats(min_value=0.01, max_value=1e6),
    fractions=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=30),
)
def test_fills_never_exceed_order_quantity(quantity: float, fractions: list[float]) -> None:
    order = order_in(S.ACCEPTED, quantity=quantity)
    total = 0.0

    for fraction in fractions:
        if not order.is_open:
            break
        ask = fraction * order.remaining_qty
        try:
            order.fill(1, ask, 10.0)
            total += ask
        except InvalidTransition:
            assert ask <= 0 or ask > order.remaining_qty

    assert order.filled_qty <= order.quantity
    assert total <= quantity * (1 + 1e-9) + 1e-9
    assert order.remaining_qty >= 0.0
    assert order.is_open == (order.status is not S.FILLED)


# -- regressions: a refused fill must not corrupt the order ---------------------------------------


@pytest.mark.parametrize("status", [S.NEW, S.CANCELLED, S.EXPIRED, S.REJECTED])
def test_refused_fill_leaves_the_order_unchanged(status: OrderStatus) -> None:
    order = order_in(status)

    with pytest.raises(InvalidTransition):
        order.fill(9, 5.0, 10.0)

    assert order.status is status
    assert order.filled_qty == 0.0
    assert order.avg_fill_price == 0.0
    assert order.remaining_qty == order.quantity


def test_refused_fill_after_partial_leaves_the_order_unchanged() -> None:
    order = order_in(S.ACCEPTED)
    order.fill(1, 4.0, 10.0)
    order.cancel(2, "user")

    with pytest.raises(InvalidTransition):
        order.fill(3, 1.0, 20.0)

    assert (order.filled_qty, order.avg_fill_price) == (4.0, 10.0)


@pytest.mark.parametrize("quantity", [float("nan"), float("inf")])
def test_non_finite_fill_quantity_raises(quantity: float) -> None:
    order = order_in(S.ACCEPTED)

    with pytest.raises(InvalidTransition):
        order.fill(5, quantity, 10.0)

    assert order.filled_qty == 0.0
