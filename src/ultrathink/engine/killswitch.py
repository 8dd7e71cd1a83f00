"""The kill switch: one action that stops all trading, and only an audited resume undoes it.

``trigger`` sets the trading state to HALTED first (from then on risk denies every new order
with TRADING_HALTED, so no strategy, model or fallback can re-open exposure), then cancels
every working order directly at the broker (never rate-limited: cancels do not go through the
order limits), then, if asked, sends a reduce-only market order per open position that
bypasses risk. ``verify_flat`` reports what is still held once those orders have filled
(at the next bar of each symbol). ``resume`` is the only way back to ACTIVE and writes who
and why to the audit trail.

Triggers wired by the engine (``engine/wiring.py``): the operator (``halt``), a breach of the
daily-loss or drawdown limit on mark-to-market equity, a failing risk check, the risk
breaker opening, and the crash detector (a fall of X % within N bars).
"""

from __future__ import annotations

from collections.abc import Callable

from ultrathink.core.enums import TradingState
from ultrathink.engine.router import OrderRouter
from ultrathink.errors import PersistenceError
from ultrathink.execution.broker import Broker
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine


class KillSwitch:
    """Halt, cancel everything, optionally flatten; resume only explicitly."""

    def __init__(
        self,
        router: OrderRouter,
        risk: RiskEngine,
        broker: Broker,
        portfolio: Portfolio,
        *,
        auto_flatten: bool = True,
    ) -> None:
        self._router = router
        self._risk = risk
        self._broker = broker
        self._portfolio = portfolio
        self.n_triggers = 0
        self.last_reason = ""
        #: whether automatic triggers (limits, crash, risk failure) also flatten
        self.auto_flatten = auto_flatten
        self._flatten_wanted = False
        #: called with (source, reason) after every trigger (metrics, events)
        self.listeners: list[Callable[[str, str], None]] = []

    @property
    def is_engaged(self) -> bool:
        """True while trading is HALTED."""
        return self._risk.state is TradingState.HALTED

    def fire(self, reason: str, source: str) -> int:
        """An automatic trigger (limits, crash, failing risk): flattens if ``auto_flatten``."""
        return self.trigger(reason, source=source, flatten=self.auto_flatten)

    def trigger(self, reason: str, *, source: str = "operator", flatten: bool = True) -> int:
        """Halt trading, cancel every working order and (optionally) flatten.

        Returns the number of flatten orders sent. Calling it again while engaged cancels
        and flattens again (e.g. a position that appeared from a late fill).
        """
        self.n_triggers += 1
        self.last_reason = f"{source}: {reason}"
        self._risk.set_state(TradingState.HALTED, f"kill switch ({self.last_reason})")
        self._router.audit("killswitch.triggered", f"{self.last_reason}; flatten={flatten}")
        self.sweep(reason, keep_flatten=False)  # a re-trigger sends fresh flatten orders
        self._flatten_wanted = flatten
        n = self._flatten(reason, set()) if flatten else 0
        for listener in self.listeners:
            listener(source, reason)
        return n

    def _flatten(self, reason: str, skip: set[str]) -> int:
        n = 0
        for symbol, position in sorted(self._portfolio.positions().items()):
            if position.quantity and symbol not in skip:
                self._router.submit_flatten(symbol, -position.quantity, reason)
                n += 1
        return n

    def maintain(self) -> None:
        """While engaged: retry failed cancels, and re-send a flatten order that was lost."""
        self.sweep()
        if self._flatten_wanted:
            working = {o.symbol for o in self._broker.open_orders() if o.tag == "kill_switch"}
            self._flatten(f"retry: {self.last_reason}", working)

    def sweep(self, reason: str = "", *, keep_flatten: bool = True) -> int:
        """Cancel every working order (but the flatten orders); return how many failed.

        A cancel the broker fails (raises) is written to the audit trail and tried again at
        the next bar while the switch stays engaged: nothing blocks the kill switch.
        """
        n_failed = 0
        why = f"kill switch: {reason or self.last_reason}"
        for order in self._broker.open_orders():
            if keep_flatten and order.tag == "kill_switch":
                continue
            try:
                self._broker.cancel(order.client_order_id, why)
            except PersistenceError:  # the venue cannot keep its state: the session stops
                raise
            except Exception as exc:  # a failing venue must not stop the kill switch
                n_failed += 1
                self._router.audit(
                    "killswitch.cancel_failed", f"{order.client_order_id}: {exc!r}; retrying"
                )
        return n_failed

    def verify_flat(self) -> dict[str, float]:
        """Positions still held (symbol -> quantity); empty once flat."""
        return {s: p.quantity for s, p in self._portfolio.positions().items() if p.quantity}

    def resume(self, operator: str, reason: str) -> None:
        """Return to ACTIVE: the only way out of HALTED, written to the audit trail."""
        if not operator.strip() or not reason.strip():
            raise ValueError("resume needs the operator's name and a reason, for the audit trail")
        self._router.audit("killswitch.resumed", f"{operator}: {reason}")
        self._flatten_wanted = False
        self._risk.set_state(TradingState.ACTIVE, f"resumed by {operator}: {reason}")
