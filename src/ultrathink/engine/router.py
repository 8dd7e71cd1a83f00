"""The order router: every order goes breakers → risk → rate limiter → broker, in one place.

A strategy's request gets a deterministic client order id and is recorded; the risk breaker,
the pre-trade check, the rate limiter and the execution breaker may each deny it with an
``OrderDenied`` (a stable reason code, never an exception); an approved request goes to the
broker. A submit that raises has an unknown outcome: the broker is asked about it
(``get_order``) and the order is adopted or ends REJECTED — it is never sent twice. Cancels
go through the execution breaker too. A ``PersistenceError`` is not such a failure: the
paper venue could not commit the order to its journal (a full disk), so the session must
stop and resume from the journal; booking the order REJECTED would record an outcome a
resume cannot replay (the venue would accept it then), and the resumed store would diverge.
The kill switch's flatten orders are the only ones that bypass risk, and they say so in the
audit trail.

It runs on the kernel thread only. Its timing points (``risk`` around the check,
``execution`` around submit and cancel) are attributes the profiler may wrap for one bar.
"""

from __future__ import annotations

from collections.abc import Callable

from ultrathink.core.bus import MessageBus
from ultrathink.core.clock import Clock
from ultrathink.core.enums import DenyReason, OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import OrderDenied, OrderEvent, OrderRequest
from ultrathink.core.ids import IdGenerator
from ultrathink.core.timing import TimingPoint
from ultrathink.engine.booking import ExecutionBooker
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.working import WorkingOrders
from ultrathink.errors import PersistenceError
from ultrathink.execution.broker import Broker
from ultrathink.hardening.breaker import CircuitBreaker
from ultrathink.hardening.rate_limit import OrderRateLimiter
from ultrathink.risk.engine import RiskEngine

_HALTED = DenyReason.TRADING_HALTED
_LIMITED = DenyReason.RATE_LIMITED
_UNAVAILABLE = DenyReason.BROKER_UNAVAILABLE
#: Bus topic of a failing risk check when no risk breaker guards it (the kill switch listens).
RISK_FAILURE = "risk.failure"


class OrderRouter:
    """Routes orders of one run from the strategy (or the kill switch) to the broker.

    Parameters
    ----------
    clock : Clock
        Time of requests and of rejections made here.
    recorder : Recorder
        Receives requests, approvals, denials and audit rows.
    working : WorkingOrders
        Told about every order that is sent.
    risk : RiskEngine
        The pre-trade check.
    broker : Broker
        The venue.
    booker : ExecutionBooker
        Books what the router itself decides (denials, rejections of orders never sent).
    bus : MessageBus
        ``risk.failure`` is published when the risk check raises and no breaker guards it.
    risk_breaker, execution_breaker : CircuitBreaker or None
        Hardening (None = off): around the risk check, and around the broker calls.
    rate_limiter : OrderRateLimiter or None
        Order rate limits (denials carry RATE_LIMITED); None = unlimited.
    on_denied : callable or None
        The strategy's ``on_order_denied`` hook.
    id_prefix : str
        Prefix of client order ids.
    """

    def __init__(
        self,
        clock: Clock,
        recorder: Recorder,
        working: WorkingOrders,
        risk: RiskEngine,
        broker: Broker,
        booker: ExecutionBooker,
        bus: MessageBus,
        *,
        risk_breaker: CircuitBreaker | None = None,
        execution_breaker: CircuitBreaker | None = None,
        rate_limiter: OrderRateLimiter | None = None,
        on_denied: Callable[[OrderDenied], None] | None = None,
        id_prefix: str = "O",
    ) -> None:
        self._clock = clock
        self._recorder = recorder
        self._working = working
        self._risk = risk
        self._broker = broker
        self._booker = booker
        self._bus = bus
        self._ids = IdGenerator(id_prefix)
        self._risk_breaker = risk_breaker
        self._execution_breaker = execution_breaker
        self._rate_limiter = rate_limiter
        self._on_denied = on_denied
        # timing points: the profiler may swap these for timed versions on a sampled bar
        self._check = risk.check
        self._submit = broker.submit
        self._cancel = broker.cancel
        #: orders whose submit raised and whose fate the broker could not tell yet
        self._unknown: dict[str, OrderRequest] = {}
        self.has_unknown_orders = False

    @property
    def rate_limiter(self) -> OrderRateLimiter | None:
        """The order rate limiter, if any (for the snapshot's headroom)."""
        return self._rate_limiter

    def timing_points(self) -> list[TimingPoint]:
        """Where the profiler may time this component (see ``core/timing.py``)."""
        return [
            TimingPoint("risk", self, "_check"),
            TimingPoint("execution", self, "_submit"),
            TimingPoint("execution", self, "_cancel"),
        ]

    @property
    def n_orders(self) -> int:
        """Client order ids issued so far."""
        return self._ids.last

    # -- strategy orders ----------------------------------------------------------------------
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
        """Build the request, run the pre-trade gates, and send it if approved; its id."""
        coid = self._ids.next()
        req = OrderRequest(
            coid, self._clock.now_ns(), symbol, side, float(quantity), order_type,
            limit_price, stop_price, tif, reduce_only, tag,
        )  # fmt: skip
        self._recorder.request(req)
        denied = self._pre_trade(req)
        if denied is not None:
            self._booker.denied(denied)
            if self._on_denied is not None:
                self._on_denied(denied)
            return coid
        self._recorder.approved(coid)
        self._send(req)
        return coid

    def _pre_trade(self, req: OrderRequest) -> OrderDenied | None:
        rb = self._risk_breaker
        if rb is not None and not rb.allow():
            detail = f"risk breaker is {rb.state.value}: no order passes unchecked"
            return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _HALTED, detail)
        try:
            denied = self._check(req)
        except Exception as exc:  # a failing risk component must stop trading, not the run
            detail = f"risk check failed: {exc!r}"
            if rb is not None:
                rb.record_failure(detail)  # its OPEN transition fires the kill switch
            else:
                self._bus.publish(RISK_FAILURE, detail)
            return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _HALTED, detail)
        if rb is not None:
            rb.record_success()
        if denied is None and self._rate_limiter is not None:
            limited = self._rate_limiter.check_order(req.symbol)
            if limited is not None:
                return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _LIMITED, limited)
        eb = self._execution_breaker
        if denied is None and eb is not None and not eb.allow():
            detail = f"execution breaker is {eb.state.value}: the broker is failing; not sent"
            return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, _UNAVAILABLE, detail)
        return denied

    def _send(self, req: OrderRequest) -> None:
        price = req.limit_price if req.limit_price is not None else req.stop_price
        self._working.add(req.client_order_id, req.symbol, req.side, req.quantity, price)
        eb = self._execution_breaker
        if eb is None:
            self._submit(req)
            return
        try:
            self._submit(req)
        except PersistenceError:  # the venue cannot keep its state: stop, never guess
            raise
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
                order = self._broker.get_order(coid)
            except Exception as exc:
                self.audit("execution.query_failed", f"{coid}: {exc!r}; asking again next bar")
                continue
            del self._unknown[coid]
            if order is not None:
                self.audit("execution.adopted", f"{coid}: the broker has it ({order.status})")
            else:
                reason = "the broker never received it (submit failed)"
                self._booker.on_order_event(
                    OrderEvent(
                        self._clock.now_ns(), coid, req.symbol, OrderStatus.REJECTED, 0.0, reason
                    )
                )
        self.has_unknown_orders = bool(self._unknown)

    # -- the kill switch and operators --------------------------------------------------------
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

    def cancel_order(self, client_order_id: str, reason: str) -> bool:
        """Cancel at the broker through the execution breaker; False if it failed or was done."""
        eb = self._execution_breaker
        if eb is None:
            return self._cancel(client_order_id, reason)
        try:
            done = self._cancel(client_order_id, reason)
        except PersistenceError:
            raise
        except Exception as exc:  # the order keeps working; the caller may try again
            eb.record_failure(f"cancel {client_order_id}: {exc!r}")
            self.audit("execution.cancel_failed", f"{client_order_id}: {exc!r}")
            return False
        eb.record_success()
        return done

    def cancel_all(self, symbol: str | None, reason: str) -> int:
        """Cancel every working order (of ``symbol``); return how many were cancelled."""
        n = 0
        for order in self._working.orders(symbol):
            n += self.cancel_order(order.client_order_id, reason)
        return n

    def audit(self, kind: str, detail: str) -> None:
        """Append a free-form row (e.g. ``decision.hold``) to the run's audit trail."""
        self._recorder.audit((self._clock.now_ns(), kind, detail))
