"""The pre-trade risk engine: says no with an ``OrderDenied`` event, never an exception.

Checks run in a fixed order (state, validity, market data, reduce-only / REDUCING / daily
loss / drawdown for orders that add exposure, open orders, price band, order notional,
position, gross exposure, buying power);
the first failing one names the reason. Exposure projections include working orders, so a
strategy cannot slip past a limit by splitting orders.

Price bands guard against fat-fingered *limit* prices, as exchanges do: a limit price more
than ``price_band_pct`` away from the last price is refused. A stop price is a trigger, not a
price the order will trade at, so it is not banded (a protective stop 20 % below the market
is normal); once a stop triggers it trades as a market order, priced by the market.

Buying power: a buy that ends long must be covered by cash less working buys, valued at the
order's price (the last close for a market order) times ``1 + fee_estimate_bps``, plus the
broker's fixed fee per order. ``decision/sizing.py`` sizes with the same arithmetic, so a
sized order is never refused for buying power.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from ultrathink.core.enums import DenyReason, OrderType, Side, TradingState
from ultrathink.core.events import OrderDenied, OrderRequest
from ultrathink.risk.config import RiskConfig

_NS_PER_DAY = 86_400_000_000_000
_INF = math.inf


def _or_inf(value: float | None) -> float:
    return _INF if value is None else float(value)


class AccountView(Protocol):
    """What risk reads from the portfolio."""

    cash: float

    def position(self, symbol: str) -> float: ...

    def last_price(self, symbol: str) -> float | None: ...

    def equity(self) -> float: ...

    def gross_exposure(self) -> float: ...


class OrdersView(Protocol):
    """What risk reads from the working orders."""

    def pending_qty(self, symbol: str) -> float: ...

    def n_open_orders(self) -> int: ...

    def pending_buy_notional(self) -> float:
        """Value of the unfilled rest of working buy orders (all symbols)."""
        ...

    def pending_gross_notional(self, exclude_symbol: str) -> float:
        """Σ |unfilled quantity × price| of working orders in symbols other than this one."""
        ...


class RiskEngine:
    """Applies ``RiskConfig`` to requests and owns the ``TradingState``."""

    def __init__(
        self,
        config: RiskConfig,
        account: AccountView,
        orders: OrdersView,
        *,
        fixed_fee_estimate: float = 0.0,
        on_breach: Callable[[DenyReason, str], None] | None = None,
    ) -> None:
        self._account = account
        self._orders = orders
        self._fixed_fee = fixed_fee_estimate
        self.state = TradingState.ACTIVE
        self.state_reason = ""
        self.peak_equity = 0.0
        self._next_day_ns = -(2**62)
        self.day_start_equity = 0.0
        self.daily_loss_breached = False
        self._last_equity = 0.0
        self._reducing_code = DenyReason.REDUCE_ONLY
        #: called once per breach of the daily-loss or drawdown limit (e.g. the kill switch)
        self.breach_listener = on_breach
        #: symbols an operator disabled: only reducing orders pass in them
        self.disabled_symbols: set[str] = set()
        self.n_approved = 0
        self.n_denied = 0
        self.reconfigure(config)

    def set_limit(self, name: str, value: float | None) -> None:
        """Change one limit of the config (validated as in the config; ValidationError if not)."""
        self.reconfigure(RiskConfig(**{**self.config.model_dump(), name: value}))

    def reconfigure(self, config: RiskConfig) -> None:
        """Apply new limits from the next order on (an operator override at runtime)."""
        self.config = config
        # breach thresholds as "equity below reference × keep"; -inf disables the check
        dd, daily = config.max_drawdown_pct, config.max_daily_loss_pct
        self._dd_keep = 1.0 - dd / 100.0 if dd is not None else -_INF
        self._daily_keep = 1.0 - daily / 100.0 if daily is not None else -_INF
        #: False when no equity-based limit is set: the kernel then skips ``on_equity``
        self.needs_equity = dd is not None or daily is not None
        # limits as plain floats (inf = off): the checks run on every order
        self._max_open = _or_inf(config.max_open_orders)
        self._band_pct = _or_inf(config.price_band_pct)
        self._max_order_notional = _or_inf(config.max_order_notional)
        self._max_pos_qty = _or_inf(config.max_position_qty)
        self._max_pos_notional = _or_inf(config.max_position_notional)
        self._gross_pct = _or_inf(config.max_gross_exposure_pct)
        self._fee_factor = 1.0 + config.fee_estimate_bps / 1e4

    # -- state ------------------------------------------------------------------------------
    def set_state(
        self, state: TradingState, reason: str, code: DenyReason = DenyReason.REDUCE_ONLY
    ) -> None:
        """Change the trading state (operator, kill switch or a limit breach).

        ``code`` is the denial reason given to exposure-increasing orders while REDUCING.
        Returning to ACTIVE restarts the drawdown measurement from the current equity, so a
        resume is not undone by the very drawdown it acknowledged.
        """
        if state is TradingState.ACTIVE and self.state is not TradingState.ACTIVE:
            self.peak_equity = self._last_equity
        self.state = state
        self.state_reason = reason
        self._reducing_code = code

    def on_equity(self, ts_ns: int, equity: float) -> None:
        """Feed mark-to-market equity at each close: tracks peak, day start and breaches."""
        self._last_equity = equity
        if equity > self.peak_equity:
            self.peak_equity = equity
        elif equity < self.peak_equity * self._dd_keep and self.peak_equity > 0:
            self._breach_drawdown(equity)
        if ts_ns >= self._next_day_ns:
            self._roll_day(ts_ns, equity)
        elif (
            equity < self.day_start_equity * self._daily_keep
            and self.day_start_equity > 0
            and not self.daily_loss_breached
        ):
            self.daily_loss_breached = True
            loss_pct = (1.0 - equity / self.day_start_equity) * 100.0
            self._notify(
                DenyReason.MAX_DAILY_LOSS,
                f"daily loss {loss_pct:.2f}% > max_daily_loss_pct {self.config.max_daily_loss_pct}",
            )

    def _roll_day(self, ts_ns: int, equity: float) -> None:
        self._next_day_ns = (ts_ns // _NS_PER_DAY + 1) * _NS_PER_DAY
        self.day_start_equity = equity
        self.daily_loss_breached = False

    def _breach_drawdown(self, equity: float) -> None:
        if self.state is TradingState.ACTIVE:
            dd_pct = (1.0 - equity / self.peak_equity) * 100.0
            detail = f"drawdown {dd_pct:.2f}% > max_drawdown_pct {self.config.max_drawdown_pct}"
            self.set_state(TradingState.REDUCING, detail, DenyReason.MAX_DRAWDOWN)
            self._notify(DenyReason.MAX_DRAWDOWN, detail)

    def _notify(self, code: DenyReason, detail: str) -> None:
        if self.breach_listener is not None:
            self.breach_listener(code, detail)

    # -- checks -----------------------------------------------------------------------------
    def check(self, req: OrderRequest) -> OrderDenied | None:
        """Return None to approve ``req``, or the ``OrderDenied`` that refuses it."""
        denial = self._check(req)
        if denial is None:
            self.n_approved += 1
            return None
        self.n_denied += 1
        reason, detail = denial
        return OrderDenied(req.ts_ns, req.client_order_id, req.symbol, reason, detail)

    def _check(self, req: OrderRequest) -> tuple[DenyReason, str] | None:
        if self.state is TradingState.HALTED:
            return DenyReason.TRADING_HALTED, f"trading is HALTED ({self.state_reason})"
        if not req.quantity > 0:
            return DenyReason.INVALID_ORDER, f"quantity must be > 0, was {req.quantity}"
        last = self._account.last_price(req.symbol)
        if last is None:
            return DenyReason.NO_MARKET_DATA, f"no price seen yet for {req.symbol}"
        current = self._account.position(req.symbol) + self._orders.pending_qty(req.symbol)
        after = current + (req.quantity if req.side is Side.BUY else -req.quantity)
        reduces = abs(after) < abs(current) and (after == 0 or (after > 0) == (current > 0))
        if not reduces and (req.reduce_only or self.state is not TradingState.ACTIVE
                            or self.daily_loss_breached):  # fmt: skip
            return self._deny_increase(req)
        if not reduces and self.disabled_symbols and req.symbol in self.disabled_symbols:
            return DenyReason.SYMBOL_DISABLED, (
                f"{req.symbol} is disabled by an operator; only reducing orders pass"
            )
        if self._orders.n_open_orders() >= self._max_open:
            return DenyReason.MAX_OPEN_ORDERS, (
                f"{self.config.max_open_orders} orders already working"
            )
        ref = last
        if req.order_type is OrderType.LIMIT:
            ref = _reference_price(req, last)
            off_pct = abs(ref - last) / last * 100.0
            if abs(ref - last) > last * self._band_pct / 100.0 * (1 + 1e-12):
                return DenyReason.PRICE_BAND, (
                    f"{req.order_type.value} price {ref} is {off_pct:.2f}% from last {last}; "
                    f"price_band_pct is {self._band_pct}"
                )
        elif req.order_type is OrderType.STOP:
            ref = _reference_price(req, last)  # valued at its trigger; never banded
        notional = req.quantity * ref
        if notional > self._max_order_notional:
            return DenyReason.MAX_ORDER_NOTIONAL, (
                f"order value {notional:,.2f} > max_order_notional {self._max_order_notional:,.2f}"
            )
        if reduces:
            return None
        return self._check_exposure(req, ref, after, notional)

    def _deny_increase(self, req: OrderRequest) -> tuple[DenyReason, str]:
        if req.reduce_only:
            return DenyReason.REDUCE_ONLY, "reduce_only order would increase the position"
        if self.state is TradingState.REDUCING:
            return self._reducing_code, (
                f"trading is REDUCING ({self.state_reason}); only reducing orders pass"
            )
        return DenyReason.MAX_DAILY_LOSS, (
            f"daily loss >= max_daily_loss_pct {self.config.max_daily_loss_pct}; "
            "only reducing orders until the next day"
        )

    def _check_exposure(
        self, req: OrderRequest, ref: float, after: float, notional: float
    ) -> tuple[DenyReason, str] | None:
        if abs(after) > self._max_pos_qty:
            return DenyReason.MAX_POSITION, (
                f"position {after:g} {req.symbol} would exceed max_position_qty "
                f"{self._max_pos_qty:g}"
            )
        if abs(after) * ref > self._max_pos_notional:
            return DenyReason.MAX_POSITION, (
                f"position value {abs(after) * ref:,.2f} would exceed max_position_notional "
                f"{self._max_pos_notional:,.2f}"
            )
        account = self._account
        if self._gross_pct != _INF:
            equity = account.equity()
            current = account.position(req.symbol)
            gross = account.gross_exposure() + (abs(after) - abs(current)) * ref
            gross += self._orders.pending_gross_notional(req.symbol)
            if gross > equity * self._gross_pct / 100.0 * (1 + 1e-12):
                return DenyReason.MAX_GROSS_EXPOSURE, (
                    f"gross exposure {gross:,.2f} would exceed {self._gross_pct}% "
                    f"of equity {equity:,.2f}"
                )
        if self.config.check_buying_power and req.side is Side.BUY and after > 0:
            cost = notional * self._fee_factor + self._fixed_fee
            available = account.cash - self._orders.pending_buy_notional() * self._fee_factor
            if cost > available + 1e-9:
                return DenyReason.INSUFFICIENT_BUYING_POWER, (
                    f"buy of {notional:,.2f} (+{cost - notional:,.2f} est. costs) exceeds "
                    f"available cash {available:,.2f} "
                    f"(cash {account.cash:,.2f} less working buys)"
                )
        return None


def _reference_price(req: OrderRequest, last: float) -> float:
    if req.order_type is OrderType.LIMIT and req.limit_price:
        return req.limit_price
    if req.order_type is OrderType.STOP and req.stop_price:
        return req.stop_price
    return last
