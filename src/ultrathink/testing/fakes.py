"""Small, real fakes that tests share: a strategy context, an execution sink, a paper venue.

Each one implements the interface it stands in for completely and keeps what it was told,
so a test asserts on outcomes instead of on mocked calls. ``FakeContext`` and
``RecordingSink`` pass the contract suites of their interfaces
(``ultrathink.testing.contracts``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ultrathink.core.clock import Clock, TestClock
from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, Fill, OrderEvent, OrderRequest
from ultrathink.core.ids import IdGenerator
from ultrathink.decision.sizing import SizingPolicy
from ultrathink.engine.config import SizingConfig
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import JournalSink, PaperBroker

B = TypeVar("B", bound=Broker)
#: one minute in nanoseconds: the bar interval of ``Venue``
MIN_NS = 60_000_000_000


class RecordingSink:
    """An ``ExecutionSink`` that keeps everything a broker reports, in order.

    Attributes
    ----------
    events : list of OrderEvent
        Every order event.
    fills : list of Fill
        Every fill.
    log : list of OrderEvent or Fill
        Both, interleaved as they were reported.
    order_filled_at_fill : list of float
        The order's ``filled_qty`` as the sink saw it with each fill (it must include it).
    """

    def __init__(self) -> None:
        self.events: list[OrderEvent] = []
        self.fills: list[Fill] = []
        self.log: list[OrderEvent | Fill] = []
        self.order_filled_at_fill: list[float] = []

    def on_order_event(self, event: OrderEvent) -> None:
        """Keep ``event``."""
        self.events.append(event)
        self.log.append(event)

    def on_fill(self, fill: Fill, order: Order) -> None:
        """Keep ``fill`` and the order's filled quantity at that moment."""
        self.fills.append(fill)
        self.log.append(fill)
        self.order_filled_at_fill.append(order.filled_qty)

    def events_of(self, client_order_id: str) -> list[OrderEvent]:
        """The events of one order, in order."""
        return [e for e in self.events if e.client_order_id == client_order_id]

    def statuses(self, client_order_id: str) -> list[OrderStatus]:
        """The statuses one order went through, in order."""
        return [e.status for e in self.events_of(client_order_id)]

    def fills_of(self, client_order_id: str) -> list[Fill]:
        """The fills of one order, in order."""
        return [f for f in self.fills if f.client_order_id == client_order_id]


class Venue(Generic[B]):
    """A broker with its ``TestClock`` and ``RecordingSink``, fed one bar at a time.

    Parameters
    ----------
    make : callable
        ``(clock, sink) -> broker``: builds the broker under test.
    start_ns : int
        Time of the clock and of bar number 0.
    quantity : float
        The quantity ``submit`` orders when it is given none.
    volume : float
        The volume of a bar ``bar`` delivers when it is given none.

    Examples
    --------
    >>> venue = Venue.paper()
    >>> _ = venue.bar(0)
    >>> order = venue.submit("A", 5.0)
    >>> _ = venue.bar(1)
    >>> venue.sink.statuses("A")
    [<OrderStatus.ACCEPTED: 'ACCEPTED'>, <OrderStatus.FILLED: 'FILLED'>]
    """

    def __init__(
        self,
        make: Callable[[TestClock, ExecutionSink], B],
        start_ns: int = 0,
        *,
        quantity: float = 10.0,
        volume: float = 1e9,
    ) -> None:
        self.start_ns = start_ns
        self.quantity = quantity
        self.volume = volume
        self.clock = TestClock(start_ns)
        self.sink = RecordingSink()
        self.broker: B = make(self.clock, self.sink)
        self._ids = IdGenerator("O")

    @staticmethod
    def paper(
        config: PaperBrokerConfig | None = None,
        journal: JournalSink | None = None,
        start_ns: int = 0,
        *,
        quantity: float = 10.0,
        volume: float = 1e9,
    ) -> Venue[PaperBroker]:
        """A venue around a ``PaperBroker`` (default costs: none; ``journal``: none)."""
        cfg = config if config is not None else PaperBrokerConfig()
        return Venue(
            lambda clock, sink: PaperBroker(cfg, clock, sink, journal),
            start_ns,
            quantity=quantity,
            volume=volume,
        )

    def submit(
        self, client_order_id: str | None = None, quantity: float | None = None, **kw: Any
    ) -> Order:
        """Submit a request at the clock's time; keywords are ``OrderRequest`` fields.

        The id defaults to the next ``O-000000001``…; ``quantity`` to the venue's,
        ``symbol`` to ``"AAA"``, ``side`` to BUY.
        """
        coid = client_order_id if client_order_id is not None else self._ids.next()
        qty = quantity if quantity is not None else self.quantity
        symbol, side = kw.pop("symbol", "AAA"), kw.pop("side", Side.BUY)
        request = OrderRequest(coid, self.clock.now_ns(), symbol, side, qty, **kw)
        return self.broker.submit(request)

    def bar(
        self,
        i: int,
        o: float = 100.0,
        h: float = 101.0,
        lo: float = 99.0,
        c: float = 100.0,
        volume: float | None = None,
        symbol: str = "AAA",
    ) -> Bar:
        """Deliver bar number ``i`` (one a minute); the clock moves to its time first.

        ``volume`` defaults to the venue's. The clock never goes back: a bar older than it
        (a replayed one) leaves it where it is.
        """
        vol = volume if volume is not None else self.volume
        bar = Bar(self.start_ns + i * MIN_NS, symbol, o, h, lo, c, vol)
        self.clock.set_ns(max(self.clock.now_ns(), bar.ts_ns))
        self.broker.on_bar(bar)
        return bar


class FakeContext:
    """A complete ``StrategyContext`` without an engine: records orders, books what fills.

    Orders are kept working (``pending_qty``) until ``fill_working`` fills them, at their
    limit or stop price or else at the last price, paying cash (no costs); with
    ``fill_immediately`` every order fills as it is submitted. Sizing is the engine's
    ``SizingPolicy`` over this account, so ``order_size`` and ``affordable_buy`` follow the
    run's conventions (all-in by default; ``SizingConfig(mode="fixed", quantity=...)``).

    Parameters
    ----------
    cash : float
        Starting cash.
    prices : dict or None
        Last price per symbol; symbols without one answer ``last_price`` with None.
    positions : dict or None
        Signed positions held from the start.
    sizing : SizingConfig or None
        The sizing settings (default: all-in, lot 1).
    n_symbols : int
        Symbols an all-in equity is split across.
    affordable : float or None
        Caps every buy ``affordable_buy`` answers at this quantity instead of what cash
        covers (None: cash decides).
    fill_immediately : bool
        Fill every order at submission.
    clock : Clock or None
        Answers ``now_ns`` and stamps requests (default: a ``TestClock`` at 0).

    Attributes
    ----------
    submits : list of OrderRequest
        Every submitted request, in order.
    cancels : list of str
        Ids passed to ``cancel``, then ``"all:<symbol>"`` for each ``cancel_all``.
    audits : list of (str, str)
        ``(kind, detail)`` of each ``audit`` call.
    affordability_asked : list of (str, float, float)
        ``(symbol, current, quantity)`` of each ``affordable_buy`` call.
    working : dict of str to OrderRequest
        The working orders by client order id.
    positions, prices, pending : dict
        Signed positions, last prices and signed working quantities; a test may set them.
    cash_balance : float
        Cash; a test may set it.
    """

    def __init__(
        self,
        *,
        cash: float = 100_000.0,
        prices: dict[str, float] | None = None,
        positions: dict[str, float] | None = None,
        sizing: SizingConfig | None = None,
        n_symbols: int = 1,
        affordable: float | None = None,
        fill_immediately: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.cash_balance = cash
        self.prices: dict[str, float] = dict(prices or {})
        self.positions: dict[str, float] = dict(positions or {})
        self.pending: dict[str, float] = {}
        self.affordable = affordable
        self.fill_immediately = fill_immediately
        self.clock: Clock = clock if clock is not None else TestClock(0)
        self.submits: list[OrderRequest] = []
        self.working: dict[str, OrderRequest] = {}
        self.cancels: list[str] = []
        self.audits: list[tuple[str, str]] = []
        self.affordability_asked: list[tuple[str, float, float]] = []
        self.sizing = SizingPolicy(sizing or SizingConfig(), n_symbols, _Account(self), self)
        self._ids = IdGenerator("O")

    # -- StrategyContext ------------------------------------------------------------------------
    def now_ns(self) -> int:
        """The clock's time."""
        return self.clock.now_ns()

    def submit(
        self,
        symbol: str,
        side: Side,
        quantity: float,
        order_type: OrderType,
        limit_price: float | None,
        stop_price: float | None,
        tif: TimeInForce,
        reduce_only: bool,
        tag: str,
    ) -> str:
        """Record the request, keep it working (or fill it at once); return its new id."""
        coid = self._ids.next()
        request = OrderRequest(
            coid, self.now_ns(), symbol, side, float(quantity), order_type,
            limit_price, stop_price, tif, reduce_only, tag,
        )  # fmt: skip
        self.submits.append(request)
        self.working[coid] = request
        self._add(self.pending, symbol, _signed(request))
        if self.fill_immediately:
            self._fill(request, None)
        return coid

    def cancel(self, client_order_id: str) -> bool:
        """Stop a working order; False when it is unknown or done."""
        self.cancels.append(client_order_id)
        return self._cancel(client_order_id)

    def cancel_all(self, symbol: str | None) -> int:
        """Cancel every working order (of ``symbol``); return how many."""
        self.cancels.append(f"all:{symbol}")
        ids = [c for c, r in self.working.items() if symbol is None or r.symbol == symbol]
        return sum(self._cancel(coid) for coid in ids)

    def audit(self, kind: str, detail: str) -> None:
        """Keep the audit row."""
        self.audits.append((kind, detail))

    def position(self, symbol: str) -> float:
        """Signed position (0.0 when flat)."""
        return self.positions.get(symbol, 0.0)

    def pending_qty(self, symbol: str) -> float:
        """Signed quantity still working in ``symbol``."""
        return self.pending.get(symbol, 0.0)

    def cash(self) -> float:
        """Cash."""
        return self.cash_balance

    def equity(self) -> float:
        """Cash plus positions at their last prices (a position without a price counts 0)."""
        held = self.positions.items()
        return self.cash_balance + sum(q * self.prices.get(s, 0.0) for s, q in held)

    def last_price(self, symbol: str) -> float | None:
        """The price a test set for ``symbol``, or None."""
        return self.prices.get(symbol)

    def order_size(self, symbol: str, price: float) -> float:
        """Units of a full position at ``price`` under the sizing settings."""
        return self.sizing.order_size(price)

    def affordable_buy(self, symbol: str, current: float, quantity: float) -> float:
        """The part of a buy that cash covers now (or ``affordable``, when set)."""
        self.affordability_asked.append((symbol, current, quantity))
        if self.affordable is not None:
            return min(quantity, self.affordable)
        price = self.prices.get(symbol)
        if price is None:
            return quantity
        return self.sizing.cap_buy(current, quantity, price)

    # -- what a venue would do ------------------------------------------------------------------
    def fill_working(self, symbol: str | None = None, price: float | None = None) -> list[str]:
        """Fill every working order (of ``symbol``) at ``price``; return their ids.

        Without ``price`` an order fills at its limit or stop price, else at the last price
        (0.0 when none is set).
        """
        ids = [c for c, r in self.working.items() if symbol is None or r.symbol == symbol]
        for coid in ids:
            self._fill(self.working[coid], price)
        return ids

    def pending_buy_notional(self) -> float:
        """Value of working buys (the sizing policy's ``WorkingBuys``)."""
        return sum(
            r.quantity * (r.limit_price or r.stop_price or self.prices.get(r.symbol, 0.0))
            for r in self.working.values()
            if r.side is Side.BUY
        )

    def _fill(self, request: OrderRequest, price: float | None) -> None:
        del self.working[request.client_order_id]
        signed = _signed(request)
        self._add(self.pending, request.symbol, -signed)
        self._add(self.positions, request.symbol, signed)
        if price is None:
            price = request.limit_price or request.stop_price or self.prices.get(request.symbol)
        self.cash_balance -= signed * (price or 0.0)

    def _cancel(self, client_order_id: str) -> bool:
        request = self.working.pop(client_order_id, None)
        if request is None:
            return False
        self._add(self.pending, request.symbol, -_signed(request))
        return True

    @staticmethod
    def _add(book: dict[str, float], symbol: str, signed: float) -> None:
        book[symbol] = book.get(symbol, 0.0) + signed


class _Account:
    # the sizing policy reads ``cash`` as an attribute; the context answers it with a method
    def __init__(self, ctx: FakeContext) -> None:
        self._ctx = ctx

    @property
    def cash(self) -> float:
        return self._ctx.cash_balance

    @cash.setter
    def cash(self, value: float) -> None:
        self._ctx.cash_balance = value

    def equity(self) -> float:
        return self._ctx.equity()


def _signed(request: OrderRequest) -> float:
    return request.quantity if request.side is Side.BUY else -request.quantity
