"""The sizing policy: how many units a strategy may hold, and how many it can pay for now.

Convention (the same for backtest, paper and live):

* **At the signal bar's close** the strategy decides. ``order_size(symbol, price)`` is the
  position its policy allows: ``all_in`` invests ``fraction`` of mark-to-market equity split
  equally across the data's symbols; ``fixed`` is ``quantity`` units. Quantities are rounded
  down to ``lot_size``.
* **A buy that adds long exposure is capped at what the account can pay for now**
  (``affordable_qty``): cash, less the working buys, less the estimated costs, all valued at
  the last close — exactly the quantities and prices of the pre-trade buying-power check, so
  the policy never produces an order its own risk check refuses for buying power.
* **At the fill** (the next bar's open, plus slippage) the actual price may differ from the
  close the order was sized at: a gap up costs more than was reserved, and cash may go below
  zero by at most ``quantity × (fill price − close × (1 + cost))``. ``cash_buffer_pct``
  reserves room for such gaps (0 by default, so results compare with other engines).

The cost estimate is ``cost_bps`` of notional (at least the broker's commission plus its
fixed slippage) and ``fee_per_order`` per order.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

_EPS = 1e-9


class SizingSettings(Protocol):
    """What the policy reads from the run's ``SizingConfig``."""

    mode: Literal["all_in", "fixed"]
    quantity: float | None
    fraction: float
    lot_size: float


class Account(Protocol):
    """What the policy reads from the portfolio."""

    cash: float

    def equity(self) -> float: ...


class WorkingBuys(Protocol):
    """What the policy reads from the working orders."""

    def pending_buy_notional(self) -> float: ...


class SizingPolicy:
    """Turns the sizing settings and the account into quantities (see the module docstring).

    Parameters
    ----------
    settings : SizingSettings
        Mode, fixed quantity, fraction of equity and lot size.
    n_symbols : int
        Symbols the equity is split across in ``all_in`` mode.
    account : Account
        Cash and equity.
    orders : WorkingBuys
        The value of working buys (already committed cash).
    cost_bps : float
        Estimated proportional costs of a buy, in bps of notional.
    fee_per_order : float
        Estimated fixed fee of one order.
    cash_buffer_pct : float
        Share of cash never committed by a buy (room for gaps between close and fill).
    """

    def __init__(
        self,
        settings: SizingSettings,
        n_symbols: int,
        account: Account,
        orders: WorkingBuys,
        *,
        cost_bps: float = 0.0,
        fee_per_order: float = 0.0,
        cash_buffer_pct: float = 0.0,
    ) -> None:
        self._mode = settings.mode
        self._fixed = float(settings.quantity or 0.0)
        self._lot = settings.lot_size
        self._weight = settings.fraction / max(n_symbols, 1)
        self._account = account
        self._orders = orders
        self.cost_factor = 1.0 + cost_bps / 1e4
        self.fee_per_order = fee_per_order
        self._keep = 1.0 - cash_buffer_pct / 100.0

    def order_size(self, price: float) -> float:
        """Units of a full position at ``price`` under the policy (before the cash cap)."""
        if self._mode == "fixed":
            return self._round(self._fixed)
        if not price > 0:
            return 0.0
        return self._round(self._account.equity() * self._weight / (price * self.cost_factor))

    def available_cash(self) -> float:
        """Cash a new buy may commit: cash less working buys, their costs and the buffer."""
        committed = self._orders.pending_buy_notional() * self.cost_factor
        return self._account.cash * self._keep - committed

    def affordable_qty(self, price: float) -> float:
        """Units of a buy at ``price`` the account can pay for now (0 when none)."""
        if not price > 0:
            return 0.0
        room = self.available_cash() - self.fee_per_order
        if room <= 0:
            return 0.0
        qty = self._round(room / (price * self.cost_factor))
        # float rounding must never let the cost exceed what the risk check allows (it
        # computes (qty * price) * cost_factor + fee against cash less working buys)
        while qty > 0 and qty * price * self.cost_factor > room:
            qty = self._round(qty - self._lot)
        return qty

    def cap_buy(self, current: float, delta: float, price: float) -> float:
        """The part of a buy of ``delta`` (from position ``current``) the account can pay for.

        A buy that leaves the position at or below zero (covering a short) needs no cash; one
        that ends long is capped at ``affordable_qty`` — or at covering the short, when that
        is more.
        """
        if delta <= 0 or current + delta <= 0:
            return delta
        affordable = self.affordable_qty(price)
        return min(delta, max(affordable, -current if current < 0 else 0.0))

    def _round(self, qty: float) -> float:
        lot = self._lot
        out = math.floor(qty / lot + _EPS) * lot
        return out if out > 0 else 0.0
