"""The strategy facade: the one object a strategy talks to (``StrategyContext``).

It only delegates: orders to the router, positions and prices to the portfolio, working
quantities to the working-orders view, sizes to the sizing policy. A strategy never sees the
broker, risk or the store.
"""

from __future__ import annotations

from ultrathink.core.clock import Clock
from ultrathink.decision.sizing import SizingPolicy
from ultrathink.engine.router import OrderRouter
from ultrathink.engine.working import WorkingOrders
from ultrathink.portfolio.portfolio import Portfolio


class StrategyFacade:
    """``StrategyContext`` of one run."""

    __slots__ = (
        "_clock", "_portfolio", "_router", "_sizing", "_working", "n_capped_buys", "submit",
    )  # fmt: skip

    def __init__(
        self,
        clock: Clock,
        router: OrderRouter,
        working: WorkingOrders,
        portfolio: Portfolio,
        sizing: SizingPolicy,
    ) -> None:
        self._clock = clock
        self._router = router
        self._working = working
        self._portfolio = portfolio
        self._sizing = sizing
        #: buys that the sizing policy cut to what the account could pay for
        self.n_capped_buys = 0
        # ``submit`` is the router's: no frame of its own on the order path
        self.submit = router.submit

    def now_ns(self) -> int:
        return self._clock.now_ns()

    def cancel(self, client_order_id: str) -> bool:
        return self._router.cancel_order(client_order_id, "cancelled by strategy")

    def cancel_all(self, symbol: str | None) -> int:
        return self._router.cancel_all(symbol, "cancel_all by strategy")

    def audit(self, kind: str, detail: str) -> None:
        self._router.audit(kind, detail)

    def position(self, symbol: str) -> float:
        return self._portfolio.position(symbol)

    def pending_qty(self, symbol: str) -> float:
        return self._working.pending_qty(symbol)

    def cash(self) -> float:
        return self._portfolio.cash

    def equity(self) -> float:
        return self._portfolio.equity()

    def last_price(self, symbol: str) -> float | None:
        return self._portfolio.last_price(symbol)

    def order_size(self, symbol: str, price: float) -> float:
        return self._sizing.order_size(price)

    def affordable_buy(self, symbol: str, current: float, quantity: float) -> float:
        """The part of a buy of ``quantity`` from ``current`` the account can pay for now."""
        if quantity <= 0 or current + quantity <= 0:  # a sell, or a buy covering a short
            return quantity
        price = self._portfolio.last_price(symbol)
        if price is None:  # no market data yet: risk denies it with NO_MARKET_DATA
            return quantity
        capped = self._sizing.cap_buy(current, quantity, price)
        if capped < quantity:
            self.n_capped_buys += 1
        return capped
