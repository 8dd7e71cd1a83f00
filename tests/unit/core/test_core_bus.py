"""MessageBus: synchronous delivery in subscription order, per topic."""

from __future__ import annotations

from typing import Any

import pytest

from ultrathink.core.bus import MessageBus


def test_handlers_receive_messages_in_subscription_order() -> None:
    bus = MessageBus()
    log: list[tuple[str, Any]] = []
    bus.subscribe("bars", lambda m: log.append(("first", m)))
    bus.subscribe("bars", lambda m: log.append(("second", m)))
    bus.subscribe("bars", lambda m: log.append(("third", m)))

    bus.publish("bars", 1)
    bus.publish("bars", 2)

    assert log == [
        ("first", 1),
        ("second", 1),
        ("third", 1),
        ("first", 2),
        ("second", 2),
        ("third", 2),
    ]


def test_messages_go_only_to_their_topic() -> None:
    bus = MessageBus()
    bars: list[Any] = []
    fills: list[Any] = []
    bus.subscribe("bars", bars.append)
    bus.subscribe("fills", fills.append)

    bus.publish("bars", "b1")
    bus.publish("fills", "f1")

    assert bars == ["b1"]
    assert fills == ["f1"]


def test_publish_without_subscribers_is_a_no_op() -> None:
    bus = MessageBus()

    bus.publish("nobody", object())

    assert not bus.has_subscribers("nobody")


def test_has_subscribers_reflects_subscriptions() -> None:
    bus = MessageBus()
    assert not bus.has_subscribers("t")

    bus.subscribe("t", lambda m: None)

    assert bus.has_subscribers("t")
    assert not bus.has_subscribers("other")


def test_same_handler_subscribed_twice_is_called_twice() -> None:
    bus = MessageBus()
    got: list[int] = []
    bus.subscribe("t", got.append)
    bus.subscribe("t", got.append)

    bus.publish("t", 7)

    assert got == [7, 7]


def test_delivery_is_synchronous_on_the_publisher_thread() -> None:
    bus = MessageBus()
    got: list[int] = []
    bus.subscribe("t", got.append)

    bus.publish("t", 1)

    assert got == [1]  # delivered before publish returned


def test_handler_exception_propagates_and_stops_later_handlers() -> None:
    bus = MessageBus()
    got: list[int] = []

    def boom(_: Any) -> None:
        raise RuntimeError("handler failed")

    bus.subscribe("t", boom)
    bus.subscribe("t", got.append)

    with pytest.raises(RuntimeError, match="handler failed"):
        bus.publish("t", 1)
    assert got == []


def test_handler_publishing_nested_message_is_delivered_depth_first() -> None:
    bus = MessageBus()
    log: list[str] = []
    bus.subscribe("a", lambda m: (log.append(f"a:{m}"), bus.publish("b", m)))
    bus.subscribe("a", lambda m: log.append(f"a2:{m}"))
    bus.subscribe("b", lambda m: log.append(f"b:{m}"))

    bus.publish("a", 1)

    assert log == ["a:1", "b:1", "a2:1"]
