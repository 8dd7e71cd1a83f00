"""The working-orders view: what is still working, per order and per symbol.

Risk (``OrdersView``), sizing (``WorkingBuys``) and strategies (``pending_qty``) read it; the
order router adds an order when it is sent, and execution booking removes what fills or ends.
It keeps its own record of every working order's unfilled rest, so it never has to ask the
broker (a real venue's answer would be a network call, and the paper broker may forget
terminal orders to save memory).

Quantities are floats: partial fills leave dust (a rest of 1e-12 after 3.3 + 6.7 of 10, a
per-symbol sum of 2.3e-13 with nothing working). The view uses the accounting's tolerance
(``_EPS``, the order state machine's and the portfolio's 1e-9): a rest within it is filled,
the order leaves with its whole rest, and a symbol's sum is exactly 0 once its last working
order leaves, so a strategy may compare it with 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ultrathink.core.enums import Side

_EPS = 1e-9


class WorkingOrder(NamedTuple):
    """A working order as the view knows it (``remaining`` is unsigned)."""

    client_order_id: str
    symbol: str
    side: Side
    remaining: float
    price: float | None  # limit or stop price; None for a market order


class WorkingOrders:
    """Unfilled rest of every working order, and the sums risk and sizing need.

    Parameters
    ----------
    last_price : callable
        ``symbol -> last price or None``: values market orders in the notional sums.
    """

    __slots__ = ("_by_id", "_count", "_last_price", "_pending")

    def __init__(self, last_price: Callable[[str], float | None]) -> None:
        self._last_price = last_price
        self._by_id: dict[str, WorkingOrder] = {}
        self._pending: dict[str, float] = {}
        self._count: dict[str, int] = {}  # working orders per symbol

    # -- updates ------------------------------------------------------------------------------
    def add(
        self, client_order_id: str, symbol: str, side: Side, quantity: float, price: float | None
    ) -> None:
        """An order was sent: ``quantity`` of it is working from now on."""
        if client_order_id in self._by_id:  # sent twice: the first one's rest is replaced
            self.ended(client_order_id)
        self._by_id[client_order_id] = WorkingOrder(client_order_id, symbol, side, quantity, price)
        signed = quantity if side is Side.BUY else -quantity
        self._pending[symbol] = self._pending.get(symbol, 0.0) + signed
        self._count[symbol] = self._count.get(symbol, 0) + 1

    def filled(self, client_order_id: str, quantity: float) -> None:
        """``quantity`` of the order filled; it leaves the view once at most dust remains."""
        order = self._by_id.get(client_order_id)
        if order is None:
            return
        rest = order.remaining - quantity
        if rest <= _EPS:  # filled, within the accounting's tolerance: the whole rest leaves
            self.ended(client_order_id)
            return
        signed = quantity if order.side is Side.BUY else -quantity
        self._pending[order.symbol] -= signed
        self._by_id[client_order_id] = order._replace(remaining=rest)

    def ended(self, client_order_id: str) -> None:
        """The order reached a terminal state: its unfilled rest no longer works."""
        order = self._by_id.pop(client_order_id, None)
        if order is None:
            return
        symbol = order.symbol
        left = self._count[symbol] - 1
        if left:
            self._count[symbol] = left
            signed = order.remaining if order.side is Side.BUY else -order.remaining
            self._pending[symbol] -= signed
        else:  # its last working order: exactly nothing works, whatever dust the sum kept
            del self._count[symbol]
            self._pending[symbol] = 0.0

    # -- OrdersView (risk) and WorkingBuys (sizing) -------------------------------------------
    def pending_qty(self, symbol: str) -> float:
        """Signed quantity still working in open orders of ``symbol``."""
        return self._pending.get(symbol, 0.0)

    def n_open_orders(self) -> int:
        """Number of working orders."""
        return len(self._by_id)

    def pending_buy_notional(self) -> float:
        """Value of the unfilled rest of working buys, at limit/stop or last price."""
        if not self._by_id:
            return 0.0
        return sum(o.remaining * self._price(o) for o in self._by_id.values() if o.side is Side.BUY)

    def pending_gross_notional(self, exclude_symbol: str) -> float:
        """Σ |unfilled quantity × price| of working orders in other symbols."""
        if not self._by_id:
            return 0.0
        return sum(
            o.remaining * self._price(o) for o in self._by_id.values() if o.symbol != exclude_symbol
        )

    def orders(self, symbol: str | None = None) -> list[WorkingOrder]:
        """The working orders (of ``symbol``), in submission order."""
        values = self._by_id.values()
        return [o for o in values if symbol is None or o.symbol == symbol]

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._by_id

    def _price(self, order: WorkingOrder) -> float:
        price = order.price or self._last_price(order.symbol)
        return float(price or 0.0)
