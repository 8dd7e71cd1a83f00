"""Immutable events that flow through the kernel.

Events are ``typing.NamedTuple``: immutable, hashable, picklable and cheap to build — the
kernel creates one ``Bar`` per market event (about 0.2 µs each), where a frozen dataclass
costs several times more. Timestamps are UTC nanoseconds since the epoch (``ts_ns``).
"""

from __future__ import annotations

from typing import NamedTuple

from ultrathink.core.enums import DenyReason, OrderStatus, OrderType, Side, TimeInForce


class Bar(NamedTuple):
    """One OHLCV bar of one symbol; ``ts_ns`` is the bar's timestamp (its period start)."""

    ts_ns: int
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class OrderRequest(NamedTuple):
    """What a strategy asks for, before risk: becomes an Order or an OrderDenied.

    ``limit_price`` is set for LIMIT orders, ``stop_price`` for STOP orders.
    ``reduce_only`` orders may only shrink the absolute position.
    """

    client_order_id: str
    ts_ns: int
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    tif: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    tag: str = ""


class OrderDenied(NamedTuple):
    """A pre-trade risk denial: stable ``reason`` code plus a readable ``detail``."""

    ts_ns: int
    client_order_id: str
    symbol: str
    reason: DenyReason
    detail: str


class OrderEvent(NamedTuple):
    """A change of an order's status, with the reason for terminal non-fill states."""

    ts_ns: int
    client_order_id: str
    symbol: str
    status: OrderStatus
    filled_qty: float
    reason: str = ""


class Fill(NamedTuple):
    """An execution: ``quantity`` is positive, direction is ``side``; ``fee`` in account ccy."""

    ts_ns: int
    client_order_id: str
    fill_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    slippage_bps: float = 0.0
