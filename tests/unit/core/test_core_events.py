"""Events are immutable value objects; enums have stable string values and helpers."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from ultrathink.core.enums import (
    TERMINAL_STATUSES,
    DenyReason,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradingState,
)
from ultrathink.core.events import Bar, Fill, OrderDenied, OrderEvent, OrderRequest

BAR = Bar(1, "AAA", 10.0, 11.0, 9.0, 10.5, 1_000.0)
REQUEST = OrderRequest("O-1", 1, "AAA", Side.BUY, 5.0)
DENIED = OrderDenied(1, "O-1", "AAA", DenyReason.MAX_POSITION, "too big")
EVENT = OrderEvent(1, "O-1", "AAA", OrderStatus.ACCEPTED, 0.0)
FILL = Fill(2, "O-1", "O-1-F1", "AAA", Side.BUY, 5.0, 10.0, 0.1)

EVENTS: list[tuple[Any, str]] = [
    (BAR, "close"),
    (REQUEST, "quantity"),
    (DENIED, "reason"),
    (EVENT, "status"),
    (FILL, "price"),
]


@pytest.mark.parametrize(("event", "field"), EVENTS, ids=lambda v: type(v).__name__)
def test_assigning_an_event_attribute_raises(event: Any, field: str) -> None:
    before = getattr(event, field)

    with pytest.raises(AttributeError):
        setattr(event, field, 123)

    assert getattr(event, field) == before


@pytest.mark.parametrize(("event", "field"), EVENTS, ids=lambda v: type(v).__name__)
def test_adding_a_new_attribute_to_an_event_raises(event: Any, field: str) -> None:
    with pytest.raises(AttributeError):
        event.extra = 1


@pytest.mark.parametrize(("event", "field"), EVENTS, ids=lambda v: type(v).__name__)
def test_events_are_hashable_and_picklable(event: Any, field: str) -> None:
    clone = pickle.loads(pickle.dumps(event))

    assert clone == event
    assert hash(clone) == hash(event)


def test_replace_returns_a_new_event_and_leaves_original_untouched() -> None:
    changed = BAR._replace(close=99.0)

    assert changed.close == 99.0
    assert BAR.close == 10.5


def test_order_request_defaults() -> None:
    assert REQUEST.order_type is OrderType.MARKET
    assert REQUEST.limit_price is None
    assert REQUEST.stop_price is None
    assert REQUEST.tif is TimeInForce.GTC
    assert REQUEST.reduce_only is False
    assert REQUEST.tag == ""


def test_fill_and_order_event_defaults() -> None:
    assert FILL.slippage_bps == 0.0
    assert EVENT.reason == ""


def test_side_sign() -> None:
    assert Side.BUY.sign == 1
    assert Side.SELL.sign == -1


def test_terminal_statuses() -> None:
    terminal = {s for s in OrderStatus if s.is_terminal}

    assert terminal == set(TERMINAL_STATUSES)
    assert terminal == {
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.DENIED,
    }


@pytest.mark.parametrize(
    "enum_cls", [Side, OrderType, TimeInForce, OrderStatus, TradingState, DenyReason]
)
def test_enum_values_are_stable_strings_equal_to_their_names(enum_cls: Any) -> None:
    for member in enum_cls:
        assert member.value == member.name
        assert enum_cls(member.value) is member
        assert member == member.value  # str enum: persisted as its value
