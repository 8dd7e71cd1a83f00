"""The paper broker: a simulated venue that fills orders against bars.

Conventions (no look-ahead): an order placed while bar t is processed becomes eligible on the
first later bar of its symbol whose timestamp is >= submit time + latency. On that bar a
market order fills at the open; a limit buy fills at min(open, limit) if low <= limit; a stop
buy triggers at max(open, stop) if high >= stop and then behaves as a market order (sells
mirror this). Slippage moves market and stop fills against the trader; limit fills are never
worse than their limit. Fills may be capped at a share of bar volume, leaving the rest working.

Slippage never takes a fill outside the bar's traded range: a slipped buy fills at most at
the bar's high, a slipped sell at least at its low (the recorded ``slippage_bps`` is the
slippage actually paid). A price outside the range never traded, so no fill could get it.

Restarts: with a journal (``execution/journal.py``) every change of an order's state is
committed before the sink hears of it, so the venue is always ahead of the engine's own
store. A restart replays the session into a new broker whose journal checks the replay
against the file (``execution/journal_replay.py``). Submits are idempotent by client order
id, and an order never fills twice on one bar.
"""

from __future__ import annotations

from typing import Protocol

from ultrathink.core.clock import Clock
from ultrathink.core.enums import OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, Fill, OrderRequest
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order

_NS_PER_MS = 1_000_000
_NO_MARK = (0, -(2**63))  # (n fills, last fill bar ts) of an order that never filled


class JournalSink(Protocol):
    """Where the venue commits each change of an order (``VenueJournal``, ``ReplayJournal``)."""

    def record(
        self,
        order: Order,
        fill: Fill | None = None,
        reason: str = "",
        *,
        updated_ns: int | None = None,
    ) -> None: ...


class PaperBroker(Broker):
    """Simulated venue with deterministic fills, fees, slippage, latency and volume caps.

    Parameters
    ----------
    config : PaperBrokerConfig
        Fees, slippage, latency and liquidity.
    clock : Clock
        Time of submits and cancels.
    sink : ExecutionSink
        Hears every order event and fill.
    journal : JournalSink or None
        The venue's durable state: each state change is committed to it before the sink is
        told. A failed write raises ``PersistenceError``; the session must then stop and
        restart from the journal. None (backtests) keeps everything in memory.
    """

    def __init__(
        self,
        config: PaperBrokerConfig,
        clock: Clock,
        sink: ExecutionSink,
        journal: JournalSink | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._sink = sink
        self._latency_ns = int(config.latency_ms * _NS_PER_MS)
        self._fee_rate = config.commission_bps / 1e4
        self._open: dict[str, dict[str, Order]] = {}
        self._open_all: dict[str, Order] = {}  # every working order, in submission order
        self._orders: dict[str, Order] = {}
        self._positions: dict[str, float] = {}
        self._prev_range_bps: dict[str, float] = {}
        # open orders that filled -> (n fills, ts of the bar of the last): empty unless partials
        self._fill_marks: dict[str, tuple[int, int]] = {}
        self._journal = journal
        self.n_open = 0
        self._track_range = config.slippage_vol_mult > 0
        self.wants_bars = self._track_range

    # -- Broker interface -------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        """Accept or reject ``request``; a client order id seen before returns its order.

        The repeated submit creates nothing and reports nothing: after a restart the engine
        may resend the requests it is not sure the venue received.
        """
        known = self._orders.get(request.client_order_id)
        if known is not None:
            return known
        now = self._clock.now_ns()
        order = Order(request, eligible_ns=now + self._latency_ns)
        problem = _invalid(request)
        if problem:
            return self._reject(order, now, problem)
        event = order.accept(now)
        if self._journal is not None:
            self._journal.record(order, updated_ns=now)
        self._orders[order.client_order_id] = order
        self._open.setdefault(order.symbol, {})[order.client_order_id] = order
        self._open_all[order.client_order_id] = order
        self.n_open += 1
        self.wants_bars = True
        self._sink.on_order_event(event)
        return order

    def _reject(self, order: Order, now_ns: int, problem: str) -> Order:
        event = order.reject(now_ns, problem)
        if self._journal is not None:
            self._journal.record(order, reason=problem, updated_ns=now_ns)
        self._orders[order.client_order_id] = order
        self._sink.on_order_event(event)
        return order

    def cancel(self, client_order_id: str, reason: str) -> bool:
        order = self._orders.get(client_order_id)
        if order is None or not order.is_open:
            return False
        self._close(order)
        event = order.cancel(self._clock.now_ns(), reason)
        if self._journal is not None:
            self._journal.record(order, reason=reason, updated_ns=event.ts_ns)
        self._sink.on_order_event(event)
        return True

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            return list(self._open.get(symbol, {}).values())
        return list(self._open_all.values())

    def positions(self) -> dict[str, float]:
        return {s: q for s, q in self._positions.items() if q != 0.0}

    def get_order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    # -- housekeeping -------------------------------------------------------------------
    def trim_history(self) -> int:
        """Forget terminal orders kept in memory (degraded-mode cleanup); return how many.

        The journal (when there is one) keeps them; ``get_order`` then answers None for a
        forgotten order. The engine keeps its own view of working orders, so nothing it
        needs is lost.
        """
        done = [coid for coid, order in self._orders.items() if not order.is_open]
        for coid in done:
            del self._orders[coid]
        return len(done)

    def on_bar(self, bar: Bar) -> None:
        book = self._open.get(bar.symbol)
        if book:
            ts_ns = bar.ts_ns
            marks = self._fill_marks
            for order in list(book.values()):
                # a fill callback may have cancelled an order of this snapshot meanwhile; an
                # order never fills twice on one bar (the engine may replay it after a restart)
                if (
                    order.is_open
                    and order.eligible_ns <= ts_ns
                    and order.ts_ns < ts_ns
                    and (not marks or marks.get(order.client_order_id, _NO_MARK)[1] < ts_ns)
                ):
                    self._work(order, bar)
        if self._track_range and bar.close > 0:
            self._prev_range_bps[bar.symbol] = (bar.high - bar.low) / bar.close * 1e4

    def _work(self, order: Order, bar: Bar) -> None:
        price, slip_bps = self._match_price(order, bar)
        if price is not None:
            qty = self._fillable_qty(order, bar)
            if qty > 0:
                self._execute(order, bar, qty, price, slip_bps)
            elif (
                self._journal is not None
                and order.order_type is OrderType.STOP
                and order.tif is TimeInForce.GTC
            ):
                # a GTC stop triggered on a bar without volume stays triggered after a restart
                # (a DAY/IOC one expires next: its expiry record carries the trigger)
                self._journal.record(order, updated_ns=bar.ts_ns)
        if order.is_open and order.tif is not TimeInForce.GTC:
            self._expire(order, bar.ts_ns)

    def _expire(self, order: Order, ts_ns: int) -> None:
        self._close(order)
        reason = f"{order.tif.value} order not (fully) filled on its first eligible bar"
        event = order.expire(ts_ns, reason)
        if self._journal is not None:
            self._journal.record(order, reason=reason, updated_ns=ts_ns)
        self._sink.on_order_event(event)

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
        if not slip_bps:
            return base, 0.0
        factor = 1.0 + slip_bps / 1e4 if buy else 1.0 - slip_bps / 1e4
        price = base * factor
        # never outside the bar's range: that price did not trade (a stop may trigger at
        # its stop price beyond the bar, in which case the fill stays there, unslipped)
        bound = max(bar.high, base) if buy else min(bar.low, base)
        if (price > bound) if buy else (price < bound):
            return bound, abs(bound - base) / base * 1e4
        return price, slip_bps

    def _fillable_qty(self, order: Order, bar: Bar) -> float:
        remaining = order.remaining_qty
        cap_pct = self._config.max_volume_pct
        if cap_pct is None:
            return remaining
        return min(remaining, bar.volume * cap_pct / 100.0)

    def _execute(self, order: Order, bar: Bar, qty: float, price: float, slip_bps: float) -> None:
        n = self._fill_marks.get(order.client_order_id, _NO_MARK)[0] + 1
        fee = qty * price * self._fee_rate
        if n == 1:
            fee += self._config.fee_per_order
        event = order.fill(bar.ts_ns, qty, price)
        signed = qty if order.side is Side.BUY else -qty
        self._positions[order.symbol] = self._positions.get(order.symbol, 0.0) + signed
        if order.is_open:
            self._fill_marks[order.client_order_id] = (n, bar.ts_ns)
        else:
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
        if self._journal is not None:
            self._journal.record(order, fill, updated_ns=bar.ts_ns)
        self._sink.on_fill(fill, order)
        self._sink.on_order_event(event)

    def _close(self, order: Order) -> None:
        book = self._open.get(order.symbol)
        if book is not None and book.pop(order.client_order_id, None) is not None:
            del self._open_all[order.client_order_id]
            self.n_open -= 1
            self.wants_bars = self._track_range or self.n_open > 0
            self._fill_marks.pop(order.client_order_id, None)


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
