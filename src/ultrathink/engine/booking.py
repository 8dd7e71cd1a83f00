"""Execution booking: what the broker reports becomes positions, cash, records and hooks.

The broker reports to an ``ExecutionSink``; this is the engine's. A fill updates the
working-orders view, is booked into the portfolio, recorded with the account state after it
and handed to the strategy's ``on_fill``; an order event updates the view when the order
ends, is counted and recorded, then handed to ``on_order_event``. The router books its own
decisions here too (denials, rejections of orders that never reached the broker), so one
object counts every order's terminal state. Kernel thread only.
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
from ultrathink.errors import StrategyError
from ultrathink.execution.orders import Order
from ultrathink.portfolio.portfolio import Portfolio


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
        # hooks the strategy does not override are not called at all (two calls per order)
        self._on_event = _overridden(strategy, "on_order_event")
        self._on_fill = _overridden(strategy, "on_fill")
        # timing point: booking a fill into the portfolio
        self._apply_fill = portfolio.apply_fill

    def timing_points(self) -> list[TimingPoint]:
        """Where the profiler may time this component."""
        return [TimingPoint("portfolio", self, "_apply_fill")]

    def on_order_event(self, event: OrderEvent) -> None:
        """An order changed status (from the broker, or a rejection decided by the router)."""
        status = event.status
        if status in TERMINAL_STATUSES:
            counts = self.status_counts
            counts[status] = counts.get(status, 0) + 1
            self._working.ended(event.client_order_id)
        self._recorder.event(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:
                raise hook_error(self._strategy, "on_order_event", exc) from exc

    def on_fill(self, fill: Fill, order: Order) -> None:
        """An execution: the view, the portfolio, the record and the strategy's hook."""
        self._working.filled(fill.client_order_id, fill.quantity)
        pf = self._portfolio
        self._apply_fill(fill)
        self._recorder.fill(fill, pf.cash, pf.has_open_positions)
        if self._on_fill is not None:
            try:
                self._on_fill(fill)
            except Exception as exc:
                raise hook_error(self._strategy, "on_fill", exc) from exc

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
        except Exception as exc:
            raise hook_error(strategy, hook, exc) from exc

    return call


def _overridden(strategy: Strategy, hook: str) -> Callable[[Any], None] | None:
    if getattr(type(strategy), hook) is getattr(Strategy, hook):
        return None
    fn: Callable[[Any], None] = getattr(strategy, hook)
    return fn
