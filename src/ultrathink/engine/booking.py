"""Execution booking: what the broker reports becomes positions, cash, records and hooks.

The broker reports to an ``ExecutionSink``; this is the engine's. A fill updates the
working-orders view, is booked into the portfolio, recorded with the account state after it
and handed to the strategy's ``on_fill``; an order event updates the view when the order
ends, is counted and recorded, then handed to ``on_order_event``. The router books its own
decisions here too (denials, rejections of orders that never reached the broker), so one
object counts every order's terminal state. Kernel thread only.

A venue may report one execution twice (a resent execution report: same fill id). The repeat
is dropped, counted (``n_duplicate_fills``) and audited (``fill.duplicate``), never booked:
positions and cash stay those of a run that heard it once. The fill ids are kept per order
only while it can still fill (``_Booked``): not at all for an order its first fill completes
(the common case costs one dict lookup), and once the order has ended and every quantity its
terminal event reports is booked, they are forgotten. A later report is still recognised:
its order is neither working in the view nor open at the venue, and an order that ended
cannot fill again (``execution/orders.py``). A terminal status reported ahead of its fills
keeps the order known until they are booked. Memory is O(working orders), not O(fills),
over a session of any length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ultrathink.core.enums import TERMINAL_STATUSES, OrderStatus
from ultrathink.core.events import Fill, OrderDenied, OrderEvent
from ultrathink.core.timing import TimingPoint
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.working import WorkingOrders
from ultrathink.errors import PersistenceError, StrategyError
from ultrathink.execution.orders import Order
from ultrathink.portfolio.portfolio import Portfolio

#: Quantity tolerance of the order state machine (``execution/orders.py``): an order whose
#: booked quantity is within it of its terminal filled quantity expects no more fills.
QTY_EPS = 1e-9
#: Audit kind of a dropped repeat of a fill.
DUPLICATE_FILL = "fill.duplicate"


class _Booked:
    """What the booker keeps of one order that has fills and may still get more."""

    __slots__ = ("ended_qty", "ids", "qty")

    def __init__(self, fill_id: str | None, qty: float, ended_qty: float | None = None) -> None:
        self.ids: set[str] = {fill_id} if fill_id is not None else set()  # fill ids booked
        self.qty = qty  # quantity booked
        self.ended_qty = ended_qty  # filled quantity its terminal event reported


class ExecutionBooker:
    """The engine's ``ExecutionSink`` for one run (see the module docstring).

    Parameters
    ----------
    portfolio : Portfolio
        Books fills.
    working : WorkingOrders
        Loses what fills or ends.
    recorder : Recorder
        Records events, fills and denials.
    strategy : Strategy
        Its ``on_fill``/``on_order_event`` hooks are called when it overrides them.
    """

    def __init__(
        self, portfolio: Portfolio, working: WorkingOrders, recorder: Recorder, strategy: Strategy
    ) -> None:
        self._portfolio = portfolio
        self._working = working
        self._recorder = recorder
        self._strategy = strategy
        #: terminal states of the run's orders (DENIED included)
        self.status_counts: dict[OrderStatus, int] = {}
        #: fill reports dropped as repeats (a fill id already booked, or an ended order's)
        self.n_duplicate_fills = 0
        # orders that may still fill and have fills booked, or ended awaiting reported fills
        self._booked: dict[str, _Booked] = {}
        # hooks the strategy does not override are not called at all (two calls per order)
        self._on_event = _overridden(strategy, "on_order_event")
        self._on_fill = _overridden(strategy, "on_fill")
        # timing point: booking a fill into the portfolio
        self._apply_fill = portfolio.apply_fill

    @property
    def tracked_orders(self) -> int:
        """Orders whose booked fill ids are kept (working ones with fills): memory, O(working)."""
        return len(self._booked)

    def timing_points(self) -> list[TimingPoint]:
        """Where the profiler may time this component."""
        return [TimingPoint("portfolio", self, "_apply_fill")]

    def on_order_event(self, event: OrderEvent) -> None:
        """An order changed status (from the broker, or a rejection decided by the router)."""
        status = event.status
        if status in TERMINAL_STATUSES:
            counts = self.status_counts
            counts[status] = counts.get(status, 0) + 1
            coid, filled = event.client_order_id, event.filled_qty
            working = self._working
            booked = self._booked.get(coid)
            if booked is None:
                # untracked and still working: none of its fills is booked yet (a booked fill
                # leaves an order untracked only when it leaves the view with it)
                ahead = filled > QTY_EPS and coid in working
                working.ended(coid)
                if ahead:  # reported ahead of its fills: they are still to come
                    self._booked[coid] = _Booked(None, 0.0, filled)
            else:
                working.ended(coid)
                if filled <= booked.qty + QTY_EPS:
                    del self._booked[coid]  # every fill booked: nothing more can come
                else:  # reported ahead of its last fills: keep recognising the booked ones
                    booked.ended_qty = filled
        self._recorder.event(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except PersistenceError:  # a full disk, not the strategy's fault: as is
                raise
            except Exception as exc:
                raise hook_error(self._strategy, "on_order_event", exc) from exc

    def on_fill(self, fill: Fill, order: Order) -> None:
        """An execution: the view, the portfolio, the record and the strategy's hook.

        A repeat (see the module docstring) is dropped, counted and audited instead.
        """
        coid, qty, working = fill.client_order_id, fill.quantity, self._working
        booked = self._booked.get(coid)
        if booked is None:
            if coid not in working and not order.is_open:
                self._duplicate(fill, order, "its order had ended, every fill booked")
                return
            working.filled(coid, qty)
            if order.is_open or coid in working:  # it may fill again: keep this fill's id
                self._booked[coid] = _Booked(fill.fill_id, qty)
        elif fill.fill_id in booked.ids:
            self._duplicate(fill, order, "this fill id was booked already")
            return
        else:
            booked.ids.add(fill.fill_id)
            booked.qty += qty
            if booked.ended_qty is not None and booked.qty >= booked.ended_qty - QTY_EPS:
                del self._booked[coid]  # ended, and now every reported fill is booked
            working.filled(coid, qty)
        pf = self._portfolio
        self._apply_fill(fill)
        self._recorder.fill(fill, pf.cash, pf.has_open_positions)
        if self._on_fill is not None:
            try:
                self._on_fill(fill)
            except PersistenceError:  # a full disk, not the strategy's fault: as is
                raise
            except Exception as exc:
                raise hook_error(self._strategy, "on_fill", exc) from exc

    def _duplicate(self, fill: Fill, order: Order, why: str) -> None:
        self.n_duplicate_fills += 1
        detail = (
            f"{fill.fill_id} of {fill.client_order_id} ({fill.side.value} {fill.quantity:g} "
            f"{fill.symbol} @ {fill.price:g}) reported again: {why}; dropped, not booked twice "
            f"(order {order.status.value}, filled {order.filled_qty:g})"
        )
        self._recorder.audit((fill.ts_ns, DUPLICATE_FILL, detail))

    def denied(self, denial: OrderDenied) -> None:
        """Risk (or a breaker, or the rate limiter) refused a request."""
        counts = self.status_counts
        counts[OrderStatus.DENIED] = counts.get(OrderStatus.DENIED, 0) + 1
        self._recorder.denied(denial)


def hook_error(strategy: Strategy, hook: str, exc: Exception) -> StrategyError:
    """The error reported when a strategy hook raises (user code: no raw traceback)."""
    if isinstance(exc, StrategyError):
        return exc
    return StrategyError(f"strategy {strategy.name!r} raised in {hook}: {exc!r}")


def strategy_hook(strategy: Strategy, hook: str) -> Callable[[Any], None] | None:
    """``strategy.<hook>`` wrapped so that a raise becomes a ``StrategyError``; None if not
    overridden."""
    fn = _overridden(strategy, hook)
    if fn is None:
        return None

    def call(arg: Any) -> None:
        try:
            fn(arg)
        except PersistenceError:  # a full disk, not the strategy's fault: as is
            raise
        except Exception as exc:
            raise hook_error(strategy, hook, exc) from exc

    return call


def _overridden(strategy: Strategy, hook: str) -> Callable[[Any], None] | None:
    if getattr(type(strategy), hook) is getattr(Strategy, hook):
        return None
    fn: Callable[[Any], None] = getattr(strategy, hook)
    return fn
