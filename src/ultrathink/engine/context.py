"""The trading context: routes strategy orders through risk to the broker and books results.

It is the one object a strategy talks to (``StrategyContext``), the broker reports to
(``ExecutionSink``) and risk reads working orders from (``OrdersView``). It runs on the
kernel thread only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ultrathink.core.clock import Clock
from ultrathink.core.enums import (
    TERMINAL_STATUSES,
    DenyReason,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradingState,
)
from ultrathink.core.events import Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.core.ids import IdGenerator
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import SizingConfig
from ultrathink.engine.recorder import Recorder
from ultrathink.errors import StrategyError
from ultrathink.execution.broker import Broker
from ultrathink.execution.orders import Order
from ultrathink.hardening.breaker import CircuitBreaker
from ultrathink.hardening.rate_limit import OrderRateLimiter
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine

_HALTED = DenyReason.TRADING_HALTED
_LIMITED = DenyReason.RATE_LIMITED
_UNAVAILABLE = DenyReason.BROKER_UNAVAILABLE


class TradingContext:
    """Order routing, working-order view, execution sink and sizing for one run."""

    def __init__(
        self,
        clock: Clock,
        portfolio: Portfolio,
        sizing: SizingConfig,
        n_symbols: int,
        recorder: Recorder,
        id_prefix: str = "O",
    ) -> None:
        self._clock = clock
        self.portfolio = portfolio
        self._sizing = sizing
        self._weight = sizing.fraction / max(n_symbols, 1)
        self._recorder = recorder
        self._ids_prefix = id_prefix
        self._ids = IdGenerator(id_prefix)
        self._reissue: dict[str, tuple[str, str, float, str]] = {}
        #: True while a restart replays history: orders and audit rows are suppressed
        self.shadow = False
        self._pending: dict[str, float] = {}
        self._n_open = 0
        self.status_counts: dict[OrderStatus, int] = {}
        #: optional order rate limits (denials carry RATE_LIMITED); None = unlimited
        self.rate_limiter: OrderRateLimiter | None = None
        #: called when the risk check itself fails (the kill switch); default: HALTED
        self.on_risk_failure: Callable[[str], None] | None = None
        #: hardening (None = off): breakers around the risk check and the broker calls
        self.risk_breaker: CircuitBreaker | None = None
        self.execution_breaker: CircuitBreaker | None = None
        #: orders whose submit raised and whose fate the broker could not tell yet
        self._unknown: dict[str, OrderRequest] = {}
        self.has_unknown_orders = False
        # late-bound collaborators (they need this object to be built first)
        self.broker: Broker
        self.risk: RiskEngine
        self.strategy: Strategy

    # -- restarts (engine/recovery.py) -----------------------------------------------------
    def resume_ids(self, last_seq: int) -> None:
        """Continue client order ids after ``last_seq`` (the store's last)."""
        self._ids = IdGenerator(self._ids_prefix, last_seq)

    def id_seq(self, client_order_id: str) -> int:
        """The sequence number in one of this context's client order ids (0 if foreign)."""
        head, _, seq = client_order_id.rpartition("-")
        return int(seq) if head == self._ids_prefix and seq.isdigit() else 0

    def expect_reissue(self, intents: dict[str, tuple[str, str, float, str]]) -> None:
        """Orders of bars after the store's last: ``id -> (symbol, side, quantity, tag)``.

        The replay makes those decisions again with the same ids: a re-issued id with the
        same intent is adopted as it stands (working at the venue, or already final), never
        sent again; a different intent gets a fresh id.
        """
        self._reissue = dict(intents)

    def adopt_working_order(self, order: Order) -> None:
        """Count a working order restored from the venue as pending."""
        self._pending[order.symbol] = self._pending.get(order.symbol, 0.0) + order.signed_remaining
        self._n_open += 1

    def _adopted(self, req: OrderRequest) -> bool:
        # the same decision as before the crash: that order already exists
        intent = self._reissue.pop(req.client_order_id, None)
        if intent is None:
            return False
        same = intent == (req.symbol, req.side.value, req.quantity, req.tag)
        if not same:
            self.audit("recovery.id_clash", f"{req.client_order_id} differs from the venue's")
        return same

    def attach(self, broker: Broker, risk: RiskEngine, strategy: Strategy) -> None:
        """Connect the collaborators that are built with this context."""
        self.broker = broker
        self.risk = risk
        self.strategy = strategy
        # hooks the strategy does not override are not called at all (two calls per order)
        self._strategy_event = _overridden(strategy, "on_order_event")
        self._strategy_fill = _overridden(strategy, "on_fill")

    # -- StrategyContext --------------------------------------------------------------------
    def now_ns(self) -> int:
        return self._clock.now_ns()

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
        """Build the request, run risk, and send it to the broker if approved."""
        if self.shadow:
            return ""
        coid = self._ids.next()
        req = OrderRequest(
            coid, self._clock.now_ns(), symbol, side, float(quantity), order_type,
            limit_price, stop_price, tif, reduce_only, tag,
        )  # fmt: skip
        if self._reissue:
            if self._adopted(req):
                return coid
            while coid in self._reissue or self.broker.get_order(coid) is not None:
                coid = self._ids.next()  # a clash: never reuse an id the venue knows
            req = req._replace(client_order_id=coid)
        self._recorder.request(req)
        denied = self._pre_trade(req)
        if denied is not None:
            self._count(OrderStatus.DENIED)
            self._recorder.denied(denied)
            try:
                self.strategy.on_order_denied(denied)
            except Exception as exc:
                raise hook_error(self.strategy, "on_order_denied", exc) from exc
            return coid
        self._recorder.approved(coid)
        self._send(req)
        return coid

    def _pre_trade(self, req: OrderRequest) -> OrderDenied | None:
        rb = self.risk_breaker
        if rb is not None and not rb.allow():
            detail = f"risk breaker is {rb.state.value}: no order passes unchecked"
            return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _HALTED, detail)
        try:
            denied = self.risk.check(req)
        except Exception as exc:  # a failing risk component must stop trading, not the run
            detail = f"risk check failed: {exc!r}"
            if rb is not None:
                rb.record_failure(detail)  # its OPEN transition fires the kill switch
            elif self.on_risk_failure is not None:
                self.on_risk_failure(detail)
            else:
                self.risk.set_state(TradingState.HALTED, detail)
            return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _HALTED, detail)
        if rb is not None:
            rb.record_success()
        if denied is None and self.rate_limiter is not None:
            limited = self.rate_limiter.check_order(req.symbol)
            if limited is not None:
                return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _LIMITED, limited)
        eb = self.execution_breaker
        if denied is None and eb is not None and not eb.allow():
            detail = f"execution breaker is {eb.state.value}: the broker is failing; not sent"
            return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _UNAVAILABLE, detail)
        return denied

    def _send(self, req: OrderRequest) -> None:
        signed = req.quantity if req.side is Side.BUY else -req.quantity
        self._pending[req.symbol] = self._pending.get(req.symbol, 0.0) + signed
        self._n_open += 1
        eb = self.execution_breaker
        if eb is None:
            self.broker.submit(req)
            return
        try:
            self.broker.submit(req)
        except Exception as exc:  # the outcome is unknown: ask the broker, never resubmit
            eb.record_failure(f"submit {req.client_order_id}: {exc!r}")
            self.audit("execution.submit_failed", f"{req.client_order_id}: {exc!r}; querying")
            self._unknown[req.client_order_id] = req
            self.has_unknown_orders = True
            self.resolve_unknown_orders()
            return
        eb.record_success()

    def resolve_unknown_orders(self) -> None:
        """Ask the broker about orders whose submit raised: adopt them or reject them.

        An order the broker has is kept as the broker reports it; one it has never seen ends
        REJECTED with the reason. A query that fails is asked again at the next bar.
        """
        for coid, req in list(self._unknown.items()):
            try:
                order = self.broker.get_order(coid)
            except Exception as exc:
                self.audit("execution.query_failed", f"{coid}: {exc!r}; asking again next bar")
                continue
            del self._unknown[coid]
            if order is not None:
                self.audit("execution.adopted", f"{coid}: the broker has it ({order.status})")
            else:
                self._reject_unsent(req, "the broker never received it (submit failed)")
        self.has_unknown_orders = bool(self._unknown)

    def _reject_unsent(self, req: OrderRequest, reason: str) -> None:
        # the broker never saw it, so on_order_event cannot release it from the broker's
        # order: release it here, then book the REJECTED like any broker event
        signed = req.quantity if req.side is Side.BUY else -req.quantity
        self._pending[req.symbol] -= signed
        self._n_open -= 1
        self.on_order_event(
            OrderEvent(
                self._clock.now_ns(), req.client_order_id, req.symbol, OrderStatus.REJECTED,
                0.0, reason,
            )
        )  # fmt: skip

    def submit_flatten(self, symbol: str, signed_qty: float, reason: str) -> str:
        """Send a reduce-only market order that bypasses risk: the kill switch's flatten.

        It is recorded like any order, with an audit row naming the kill switch instead of
        a risk approval. Nothing else may bypass risk.
        """
        coid = self._ids.next()
        side = Side.BUY if signed_qty > 0 else Side.SELL
        req = OrderRequest(
            coid, self._clock.now_ns(), symbol, side, abs(float(signed_qty)), OrderType.MARKET,
            None, None, TimeInForce.GTC, True, "kill_switch",
        )  # fmt: skip
        self._recorder.request(req)
        self.audit(
            "killswitch.flatten", f"{coid} {side.value} {abs(signed_qty):g} {symbol}: {reason}"
        )
        self._recorder.approved(coid)
        self._send(req)
        return coid

    def cancel(self, client_order_id: str) -> bool:
        if self.shadow:
            return False
        return self.cancel_order(client_order_id, "cancelled by strategy")

    def cancel_order(self, client_order_id: str, reason: str) -> bool:
        """Cancel at the broker through the execution breaker; False if it failed or was done."""
        eb = self.execution_breaker
        if eb is None:
            return self.broker.cancel(client_order_id, reason)
        try:
            done = self.broker.cancel(client_order_id, reason)
        except Exception as exc:  # the order keeps working; the caller may try again
            eb.record_failure(f"cancel {client_order_id}: {exc!r}")
            self.audit("execution.cancel_failed", f"{client_order_id}: {exc!r}")
            return False
        eb.record_success()
        return done

    def audit(self, kind: str, detail: str) -> None:
        """Append a free-form row (e.g. ``decision.hold``) to the run's audit trail."""
        if not self.shadow:
            self._recorder.audit((self._clock.now_ns(), kind, detail))

    def cancel_all(self, symbol: str | None) -> int:
        if self.shadow:
            return 0
        n = 0
        for order in self.broker.open_orders(symbol):
            n += self.cancel_order(order.client_order_id, "cancel_all by strategy")
        return n

    def position(self, symbol: str) -> float:
        return self.portfolio.position(symbol)

    def pending_qty(self, symbol: str) -> float:
        """Signed quantity still working in open orders of ``symbol``."""
        return self._pending.get(symbol, 0.0)

    def n_open_orders(self) -> int:
        return self._n_open

    def pending_buy_notional(self) -> float:
        """Value of the unfilled rest of working buys, at limit/stop or last price."""
        if not self._n_open:
            return 0.0
        return sum(
            o.remaining_qty * self._order_price(o)
            for o in self.broker.open_orders()
            if o.side is Side.BUY
        )

    def pending_gross_notional(self, exclude_symbol: str) -> float:
        """Σ |unfilled quantity × price| of working orders in other symbols."""
        if not self._n_open:
            return 0.0
        return sum(
            o.remaining_qty * self._order_price(o)
            for o in self.broker.open_orders()
            if o.symbol != exclude_symbol
        )

    def _order_price(self, order: Order) -> float:
        price = order.limit_price or order.stop_price or self.portfolio.last_price(order.symbol)
        return float(price or 0.0)

    def cash(self) -> float:
        return self.portfolio.cash

    def equity(self) -> float:
        return self.portfolio.equity()

    def last_price(self, symbol: str) -> float | None:
        return self.portfolio.last_price(symbol)

    def order_size(self, symbol: str, price: float) -> float:
        """Units allowed by the sizing policy, rounded down to the lot size."""
        lot = self._sizing.lot_size
        if self._sizing.mode == "fixed":
            qty = float(self._sizing.quantity or 0.0)
        else:  # leave room for the costs the buying-power check allows for
            unit_cost = price * (1.0 + self.risk.config.fee_estimate_bps / 1e4)
            qty = self.portfolio.equity() * self._weight / unit_cost if price > 0 else 0.0
        return math.floor(qty / lot + 1e-9) * lot

    # -- ExecutionSink ----------------------------------------------------------------------
    def on_order_event(self, event: OrderEvent) -> None:
        status = event.status
        if status in TERMINAL_STATUSES:
            self._count(status)
            if status is not OrderStatus.FILLED:
                self._release(event)
        self._recorder.event(event)
        if self._strategy_event is not None:
            try:
                self._strategy_event(event)
            except Exception as exc:
                raise hook_error(self.strategy, "on_order_event", exc) from exc

    def on_fill(self, fill: Fill, order: Order) -> None:
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        self._pending[fill.symbol] -= signed
        if not order.is_open:
            self._n_open -= 1
        pf = self.portfolio
        pf.apply_fill(fill)
        self._recorder.fill(fill, pf.cash, pf.has_open_positions)
        if self._strategy_fill is not None:
            try:
                self._strategy_fill(fill)
            except Exception as exc:
                raise hook_error(self.strategy, "on_fill", exc) from exc

    def _release(self, event: OrderEvent) -> None:
        # cancelled/expired/rejected: the unfilled rest no longer counts as pending
        order = self.broker.get_order(event.client_order_id)
        if order is None:
            return
        self._pending[order.symbol] = self._pending.get(order.symbol, 0.0) - order.signed_remaining
        self._n_open -= 1

    def _count(self, status: OrderStatus) -> None:
        self.status_counts[status] = self.status_counts.get(status, 0) + 1


def hook_error(strategy: Strategy, hook: str, exc: Exception) -> StrategyError:
    """The error reported when a strategy hook raises (user code: no raw traceback)."""
    if isinstance(exc, StrategyError):
        return exc
    return StrategyError(f"strategy {strategy.name!r} raised in {hook}: {exc!r}")


def _overridden(strategy: Strategy, hook: str) -> Callable[[Any], None] | None:
    if getattr(type(strategy), hook) is getattr(Strategy, hook):
        return None
    return getattr(strategy, hook)
