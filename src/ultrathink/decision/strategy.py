"""The Strategy API: a small base class a user subclasses.

A strategy declares parameters in a nested pydantic ``Params`` model, registers indicators in
``on_start`` (``self.sma(10)``), reacts in ``on_bar`` / ``on_fill`` and emits orders with
``buy``/``sell``/``target_position``. It never sees the broker or the database: the engine
binds a ``StrategyContext`` that routes every order through pre-trade risk.

Example
-------
>>> class Momentum(Strategy):
...     name = "momentum"
...     class Params(Strategy.Params):
...         window: int = 20
...     def on_start(self) -> None:
...         self.avg = self.sma(self.params.window)
...     def on_bar(self, bar: Bar) -> None:
...         if bar.close > self.avg[bar.symbol]:
...             self.target_position(bar.symbol, self.order_size(bar.symbol, bar.close))
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from ultrathink.core.enums import OrderType, Side, TimeInForce
from ultrathink.core.events import Bar, Fill, OrderDenied, OrderEvent
from ultrathink.core.timing import TimingPoint
from ultrathink.errors import ConfigError, StrategyError
from ultrathink.features.indicators import EMA, SMA


class StrategyContext(Protocol):
    """What the engine offers a strategy (implemented in ``ultrathink.engine``)."""

    def now_ns(self) -> int: ...

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
    ) -> str: ...

    def cancel(self, client_order_id: str) -> bool: ...

    def audit(self, kind: str, detail: str) -> None: ...

    def cancel_all(self, symbol: str | None) -> int: ...

    def position(self, symbol: str) -> float: ...

    def pending_qty(self, symbol: str) -> float: ...

    def cash(self) -> float: ...

    def equity(self) -> float: ...

    def last_price(self, symbol: str) -> float | None: ...

    def order_size(self, symbol: str, price: float) -> float: ...

    def affordable_buy(self, symbol: str, current: float, quantity: float) -> float:
        """The part of a buy of ``quantity`` from position ``current`` that cash covers now."""
        ...


class IndicatorSet:
    """One streaming indicator per symbol; ``ind[symbol]`` is its current value (NaN early)."""

    __slots__ = ("_factory", "_per_symbol")

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._per_symbol: dict[str, Any] = {}

    def for_symbol(self, symbol: str) -> Any:
        """The indicator of ``symbol``, created on first use."""
        ind = self._per_symbol.get(symbol)
        if ind is None:
            ind = self._per_symbol[symbol] = self._factory()
        return ind

    def update(self, symbol: str, value: float) -> None:
        """Feed one value for ``symbol`` (the engine does this before ``on_bar``)."""
        self.for_symbol(symbol).update(value)

    def __getitem__(self, symbol: str) -> float:
        try:
            return self._per_symbol[symbol].value
        except KeyError:
            return math.nan

    def ready(self, symbol: str) -> bool:
        """True once the indicator of ``symbol`` has a value."""
        ind = self._per_symbol.get(symbol)
        return ind is not None and bool(ind.ready)


class Strategy:
    """Base class of every strategy. Subclass it and override the ``on_*`` hooks."""

    name: ClassVar[str] = "strategy"
    #: bars per symbol before decisions start (excluded from decision-latency percentiles)
    warmup_bars: ClassVar[int] = 0

    class Params(BaseModel):
        """Parameters of the strategy; subclasses extend this model."""

        model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ConfigError(_params_message(self.name, exc)) from None
        self._ctx: StrategyContext | None = None
        self._indicators: list[IndicatorSet] = []
        #: set by a strategy whose decision failed without raising (e.g. its model and
        #: every fallback failed, so it held): the decision breaker counts it as a failure
        self.failed_decision = ""

    # -- sklearn-style parameter access -----------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Current parameters as a dict."""
        return self.params.model_dump()

    def set_params(self, **params: Any) -> Strategy:
        """Return self with parameters replaced (validated)."""
        self.__init__(**{**self.get_params(), **params})  # type: ignore[misc]
        return self

    # -- engine binding ---------------------------------------------------------------------
    def bind(self, ctx: StrategyContext) -> None:
        """Attach the engine context (done by the engine before ``on_start``)."""
        self._ctx = ctx

    @property
    def ctx(self) -> StrategyContext:
        """The bound context; raises if the strategy is not attached to an engine."""
        if self._ctx is None:
            raise StrategyError(f"strategy {self.name!r} is not bound to an engine")
        return self._ctx

    @property
    def indicators(self) -> list[IndicatorSet]:
        """Indicators registered with ``sma``/``ema``/``indicator``."""
        return self._indicators

    # -- hooks ------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Called once before the first bar: register indicators here."""

    def on_bar(self, bar: Bar) -> None:
        """Called once per bar, after indicators and the portfolio saw it."""

    def on_bar_held(self, bar: Bar) -> None:
        """Called instead of ``on_bar`` while the decision breaker holds (no decisions).

        Update internal state that must see every bar (e.g. features kept by the strategy
        itself); registered indicators are updated by the engine anyway. Default: nothing.
        """

    def on_fill(self, fill: Fill) -> None:
        """Called after each fill has been booked."""

    def on_order_event(self, event: OrderEvent) -> None:
        """Called on every order status change (accepted, filled, cancelled, ...)."""

    def on_order_denied(self, denied: OrderDenied) -> None:
        """Called when pre-trade risk refuses an order."""

    def on_stop(self) -> None:
        """Called once after the last bar."""

    def stats(self) -> dict[str, Any]:
        """Strategy-specific statistics added to the run summary (none by default)."""
        return {}

    def timing_points(self) -> list[TimingPoint]:
        """Where the profiler may time this strategy's model (``core/timing.py``); none."""
        return []

    def symbol_timing_points(self, symbol: str) -> list[TimingPoint]:
        """Timing points of one symbol's state (e.g. its streaming features); none."""
        return []

    # -- indicators -------------------------------------------------------------------------
    def indicator(self, factory: Any) -> IndicatorSet:
        """Register a streaming indicator built by ``factory()`` per symbol (fed closes)."""
        ind = IndicatorSet(factory)
        self._indicators.append(ind)
        return ind

    def sma(self, window: int) -> IndicatorSet:
        """Register a simple moving average of closes."""
        return self.indicator(lambda: SMA(window))

    def ema(self, window: int) -> IndicatorSet:
        """Register an exponential moving average of closes."""
        return self.indicator(lambda: EMA(window))

    # -- state ------------------------------------------------------------------------------
    def position(self, symbol: str) -> float:
        """Signed position held in ``symbol``."""
        return self.ctx.position(symbol)

    @property
    def equity(self) -> float:
        """Mark-to-market equity."""
        return self.ctx.equity()

    @property
    def cash(self) -> float:
        """Cash balance."""
        return self.ctx.cash()

    def order_size(self, symbol: str, price: float) -> float:
        """Quantity the run's sizing policy allows for ``symbol`` at ``price``."""
        return self.ctx.order_size(symbol, price)

    # -- orders -----------------------------------------------------------------------------
    def buy(self, symbol: str, quantity: float, **kwargs: Any) -> str:
        """Buy ``quantity``; kwargs: limit=, stop=, tif=, reduce_only=, tag=. Returns the id."""
        return self._order(symbol, Side.BUY, quantity, **kwargs)

    def sell(self, symbol: str, quantity: float, **kwargs: Any) -> str:
        """Sell ``quantity`` (same kwargs as ``buy``). Returns the client order id."""
        return self._order(symbol, Side.SELL, quantity, **kwargs)

    def _order(
        self,
        symbol: str,
        side: Side,
        quantity: float,
        *,
        limit: float | None = None,
        stop: float | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False,
        tag: str = "",
    ) -> str:
        if limit is not None and stop is not None:
            raise StrategyError("an order takes limit= or stop=, not both")
        kind = (
            OrderType.LIMIT
            if limit is not None
            else (OrderType.STOP if stop is not None else OrderType.MARKET)
        )
        return self.ctx.submit(symbol, side, quantity, kind, limit, stop, tif, reduce_only, tag)

    def target_position(self, symbol: str, target: float, tag: str = "") -> str | None:
        """Send the market order that moves position + working orders to ``target``.

        A buy that ends long is cut to what the account can pay for now (cash less working
        buys and estimated costs, at the last close: the sizing convention of
        ``ultrathink.decision.sizing``), so it is never denied for buying power. Returns the
        client order id, or None when nothing needs (or can) trade.
        """
        ctx = self.ctx
        current = ctx.position(symbol) + ctx.pending_qty(symbol)
        delta = target - current
        if delta > 0:
            delta = ctx.affordable_buy(symbol, current, delta)
        if abs(delta) < 1e-9:
            return None
        side = Side.BUY if delta > 0 else Side.SELL
        return self._order(symbol, side, abs(delta), tag=tag)

    def cancel(self, client_order_id: str) -> bool:
        """Cancel one working order."""
        return self.ctx.cancel(client_order_id)

    def log_decision(self, kind: str, detail: str) -> None:
        """Write a decision record (e.g. a hold and its reason) to the audit trail."""
        self.ctx.audit(kind, detail)

    def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every working order (of ``symbol``, if given); return how many."""
        return self.ctx.cancel_all(symbol)


def _params_message(name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{loc}: {err['msg']} (was {err.get('input')!r})")
    return f"strategy {name!r}: invalid parameters: " + "; ".join(parts)
