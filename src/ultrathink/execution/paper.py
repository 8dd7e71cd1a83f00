"""The paper broker: a simulated venue that fills orders against bars.

Conventions (no look-ahead): an order placed while bar t is processed becomes eligible on the
first later bar of its symbol whose timestamp is >= submit time + latency. On that bar a
market order fills at the open; a limit buy fills at min(open, limit) if low <= limit; a stop
buy triggers at max(open, stop) if high >= stop and then behaves as a market order (sells
mirror this). Slippage moves market and stop fills against the trader; limit fills are never
worse than their limit. Fills may be capped at a share of bar volume, leaving the rest working.
"""

from __future__ import annotations

from ultrathink.core.clock import Clock
from ultrathink.core.enums import OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, Fill, OrderRequest
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order

_NS_PER_MS = 1_000_000


class PaperBroker(Broker):
    """Simulated venue with deterministic fills, fees, slippage, latency and volume caps."""

    def __init__(self, config: PaperBrokerConfig, clock: Clock, sink: ExecutionSink) -> None:
        self._config = config
        self._clock = clock
        self._sink = sink
        self._latency_ns = int(config.latency_ms * _NS_PER_MS)
        self._fee_rate = config.commission_bps / 1e4
        self._open: dict[str, dict[str, Order]] = {}
        self._orders: dict[str, Order] = {}
        self._positions: dict[str, float] = {}
        self._prev_range_bps: dict[str, float] = {}
        self._n_fills: dict[str, int] = {}
        self.n_open = 0
        self._track_range = config.slippage_vol_mult > 0
        self.wants_bars = self._track_range

    # -- Broker interface -------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        now = self._clock.now_ns()
        order = Order(request, eligible_ns=now + self._latency_ns)
        self._orders[order.client_order_id] = order
        problem = _invalid(request)
        if problem:
            self._sink.on_order_event(order.reject(now, problem))
            return order
        self._sink.on_order_event(order.accept(now))
        self._open.setdefault(order.symbol, {})[order.client_order_id] = order
        self.n_open += 1
        self.wants_bars = True
        return order

    def cancel(self, client_order_id: str, reason: str) -> bool:
        order = self._orders.get(client_order_id)
        if order is None or not order.is_open:
            return False
        self._close(order)
        self._sink.on_order_event(order.cancel(self._clock.now_ns(), reason))
        return True

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return [o for book in self._open.values() for o in book.values()]

    def positions(self) -> dict[str, float]:
        return {s: q for s, q in self._positions.items() if q != 0.0}

    def get_order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    # -- matching ---------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        book = self._open.get(bar.symbol)
        if book:
            for order in list(book.values()):
                # a fill callback may have cancelled an order of this snapshot meanwhile
                if order.is_open and order.eligible_ns <= bar.ts_ns and order.ts_ns < bar.ts_ns:
                    self._work(order, bar)
        if self._track_range and bar.close > 0:
            self._prev_range_bps[bar.symbol] = (bar.high - bar.low) / bar.close * 1e4

    def _work(self, order: Order, bar: Bar) -> None:
        price, slip_bps = self._match_price(order, bar)
        if price is not None:
            qty = self._fillable_qty(order, bar)
            if qty > 0:
                self._execute(order, bar, qty, price, slip_bps)
        if order.is_open and order.tif is not TimeInForce.GTC:
            self._close(order)
            reason = f"{order.tif.value} order not (fully) filled on its first eligible bar"
            self._sink.on_order_event(order.expire(bar.ts_ns, reason))

    def _match_price(self, order: Order, bar: Bar) -> tuple[float | None, float]:
        buy = order.side is Side.BUY
        if order.order_type is OrderType.LIMIT:
            return _limit_price(buy, order.limit_price, bar), 0.0
        if order.order_type is OrderType.STOP and not order.is_triggered:
            stop = order.stop_price
            assert stop is not None
            if buy and bar.high >= stop:
                base = max(bar.open, stop)
            elif not buy and bar.low <= stop:
                base = min(bar.open, stop)
            else:
                return None, 0.0
            order.is_triggered = True
        else:
            base = bar.open
        slip_bps = self._config.slippage_bps + self._config.slippage_vol_mult * (
            self._prev_range_bps.get(bar.symbol, 0.0)
        )
        factor = 1.0 + slip_bps / 1e4 if buy else 1.0 - slip_bps / 1e4
        return base * factor, slip_bps

    def _fillable_qty(self, order: Order, bar: Bar) -> float:
        remaining = order.remaining_qty
        cap_pct = self._config.max_volume_pct
        if cap_pct is None:
            return remaining
        return min(remaining, bar.volume * cap_pct / 100.0)

    def _execute(self, order: Order, bar: Bar, qty: float, price: float, slip_bps: float) -> None:
        n = self._n_fills.get(order.client_order_id, 0) + 1
        self._n_fills[order.client_order_id] = n
        fee = qty * price * self._fee_rate
        if n == 1:
            fee += self._config.fee_per_order
        event = order.fill(bar.ts_ns, qty, price)
        signed = qty if order.side is Side.BUY else -qty
        self._positions[order.symbol] = self._positions.get(order.symbol, 0.0) + signed
        if not order.is_open:
            self._close(order)
        fill = Fill(
            bar.ts_ns,
            order.client_order_id,
            f"{order.client_order_id}-F{n}",
            order.symbol,
            order.side,
            qty,
            price,
            fee,
            slip_bps,
        )
        self._sink.on_fill(fill, order)
        self._sink.on_order_event(event)

    def _close(self, order: Order) -> None:
        book = self._open.get(order.symbol)
        if book is not None and book.pop(order.client_order_id, None) is not None:
            self.n_open -= 1
            self.wants_bars = self._track_range or self.n_open > 0
            self._n_fills.pop(order.client_order_id, None)


def _limit_price(buy: bool, limit: float | None, bar: Bar) -> float | None:
    assert limit is not None
    if buy:
        if bar.open <= limit:
            return bar.open
        return limit if bar.low <= limit else None
    if bar.open >= limit:
        return bar.open
    return limit if bar.high >= limit else None


def _invalid(request: OrderRequest) -> str:
    if not request.quantity > 0:
        return f"quantity must be > 0, was {request.quantity}"
    if request.order_type is OrderType.LIMIT and not (request.limit_price or 0) > 0:
        return f"LIMIT order needs limit_price > 0, was {request.limit_price}"
    if request.order_type is OrderType.STOP and not (request.stop_price or 0) > 0:
        return f"STOP order needs stop_price > 0, was {request.stop_price}"
    return ""
