"""The order entity and its state machine.

::

    NEW ──accept──▶ ACCEPTED ──fill──▶ PARTIALLY_FILLED ──fill──▶ FILLED
     │                 │  │                  │
     └──reject──▶ REJECTED │                  ├──cancel──▶ CANCELLED
                       │  └──expire──▶ EXPIRED ◀──expire──┘
                       └──cancel──▶ CANCELLED

A denied request never becomes an ``Order``: risk answers it with ``OrderDenied``.
Every transition returns the ``OrderEvent`` that records it.
"""

from __future__ import annotations

from ultrathink.core.enums import TERMINAL_STATUSES, OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import OrderEvent, OrderRequest
from ultrathink.errors import InvalidTransition

_S = OrderStatus
_ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset({_S.ACCEPTED, _S.REJECTED}),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED}),
}
_QTY_EPS = 1e-9
_FILLABLE = frozenset({_S.ACCEPTED, _S.PARTIALLY_FILLED})


class Order:
    """A working order: the request plus its mutable execution state.

    Only the broker mutates an order, through the transition methods, each of which returns
    the ``OrderEvent`` to publish.
    """

    __slots__ = (
        "avg_fill_price",
        "client_order_id",
        "eligible_ns",
        "filled_qty",
        "is_open",
        "is_triggered",
        "limit_price",
        "order_type",
        "quantity",
        "reduce_only",
        "side",
        "status",
        "stop_price",
        "symbol",
        "tag",
        "tif",
        "ts_ns",
    )

    def __init__(self, request: OrderRequest, eligible_ns: int | None = None) -> None:
        self.client_order_id = request.client_order_id
        self.ts_ns = request.ts_ns
        self.symbol = request.symbol
        self.side: Side = request.side
        self.quantity = request.quantity
        self.order_type: OrderType = request.order_type
        self.limit_price = request.limit_price
        self.stop_price = request.stop_price
        self.tif: TimeInForce = request.tif
        self.reduce_only = request.reduce_only
        self.tag = request.tag
        self.status = OrderStatus.NEW
        self.is_open = True  # kept in step with status: read on every fill and cancel
        self.filled_qty = 0.0
        self.avg_fill_price = 0.0
        # a stop order becomes a market order once its stop price trades
        self.is_triggered = False
        self.eligible_ns = request.ts_ns if eligible_ns is None else eligible_ns

    @property
    def remaining_qty(self) -> float:
        """Quantity still to fill."""
        return self.quantity - self.filled_qty

    @property
    def signed_remaining(self) -> float:
        """Remaining quantity signed by side (+ buy, - sell)."""
        return self.remaining_qty if self.side is Side.BUY else -self.remaining_qty

    def _move(self, status: OrderStatus, ts_ns: int, reason: str = "") -> OrderEvent:
        if status not in _ALLOWED.get(self.status, frozenset()):
            raise InvalidTransition(
                f"order {self.client_order_id}: {self.status.value} -> {status.value} "
                "is not an allowed transition"
            )
        self.status = status
        self.is_open = status not in TERMINAL_STATUSES
        return OrderEvent(ts_ns, self.client_order_id, self.symbol, status, self.filled_qty, reason)

    def accept(self, ts_ns: int) -> OrderEvent:
        """NEW -> ACCEPTED."""
        return self._move(OrderStatus.ACCEPTED, ts_ns)

    def reject(self, ts_ns: int, reason: str) -> OrderEvent:
        """NEW/ACCEPTED -> REJECTED with the broker's reason."""
        return self._move(OrderStatus.REJECTED, ts_ns, reason)

    def cancel(self, ts_ns: int, reason: str) -> OrderEvent:
        """ACCEPTED/PARTIALLY_FILLED -> CANCELLED."""
        return self._move(OrderStatus.CANCELLED, ts_ns, reason)

    def expire(self, ts_ns: int, reason: str) -> OrderEvent:
        """ACCEPTED/PARTIALLY_FILLED -> EXPIRED."""
        return self._move(OrderStatus.EXPIRED, ts_ns, reason)

    def fill(self, ts_ns: int, quantity: float, price: float) -> OrderEvent:
        """Record an execution of ``quantity`` at ``price``; never exceeds the order quantity."""
        if self.status not in _FILLABLE:
            raise InvalidTransition(
                f"order {self.client_order_id}: cannot fill an order in status {self.status.value}"
            )
        if not 0.0 < quantity <= self.remaining_qty + _QTY_EPS:  # also rejects NaN
            raise InvalidTransition(
                f"order {self.client_order_id}: fill quantity {quantity} must be in "
                f"(0, {self.remaining_qty}]"
            )
        new_filled = self.filled_qty + quantity
        self.avg_fill_price = (
            self.avg_fill_price * self.filled_qty + price * quantity
        ) / new_filled
        done = new_filled >= self.quantity - _QTY_EPS
        self.filled_qty = self.quantity if done else new_filled
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        return self._move(status, ts_ns)
