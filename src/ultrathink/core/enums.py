"""Enumerations shared by every stage. Values are stable strings: they are persisted."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Order or fill side."""

    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    """How an order is priced."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"


class TimeInForce(StrEnum):
    """How long an order stays working.

    GTC stays until filled or cancelled; DAY expires at the end of the first bar on which it
    was eligible to fill (on daily bars: the next session), IOC likewise but never rests.
    """

    GTC = "GTC"
    DAY = "DAY"
    IOC = "IOC"


class OrderStatus(StrEnum):
    """Order life-cycle states. Terminal: FILLED, CANCELLED, REJECTED, EXPIRED, DENIED."""

    NEW = "NEW"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    DENIED = "DENIED"

    @property
    def is_terminal(self) -> bool:
        """True when no further event can change the order."""
        return self in TERMINAL_STATUSES


#: Statuses after which an order never changes (a set lookup is ~5x cheaper than the property).
TERMINAL_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.DENIED,
    }
)


class TradingState(StrEnum):
    """Whether new exposure may be taken.

    ACTIVE: every order that passes the checks; REDUCING: only orders that reduce the
    absolute position; HALTED: nothing but cancels.
    """

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class DenyReason(StrEnum):
    """Stable reason codes of pre-trade risk denials."""

    TRADING_HALTED = "TRADING_HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    INVALID_ORDER = "INVALID_ORDER"
    MAX_POSITION = "MAX_POSITION"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    PRICE_BAND = "PRICE_BAND"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    MAX_DAILY_LOSS = "MAX_DAILY_LOSS"
    MAX_DRAWDOWN = "MAX_DRAWDOWN"
    NO_MARKET_DATA = "NO_MARKET_DATA"
    RATE_LIMITED = "RATE_LIMITED"
    SYMBOL_DISABLED = "SYMBOL_DISABLED"  # an operator disabled new exposure in the symbol
    DEGRADED_MODE = "DEGRADED_MODE"  # overloaded process: only reducing orders pass
    DATA_STALE = "DATA_STALE"  # market-data breaker open: only reducing orders pass
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"  # execution breaker open: order not sent
