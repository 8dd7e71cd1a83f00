"""Positions, cash and PnL, updated by fills and marked to each bar's close.

Accounting identity (property-tested): ``equity == cash + Σ quantity × last_price`` at every
bar. Realized PnL uses the average-cost method; fees are charged to cash and to the realized
PnL of the round trip they belong to.
"""

from __future__ import annotations

from typing import NamedTuple

from ultrathink.core.enums import Side
from ultrathink.core.events import Fill

_EPS = 1e-9


class Position:
    """Signed quantity with average entry price and realized PnL (fees excluded)."""

    __slots__ = ("avg_price", "last_price", "quantity", "realized_pnl", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.quantity = 0.0
        self.avg_price = 0.0
        self.realized_pnl = 0.0
        self.last_price = 0.0

    @property
    def unrealized_pnl(self) -> float:
        """Mark-to-market PnL of the open quantity at ``last_price``."""
        return self.quantity * (self.last_price - self.avg_price)

    def apply(self, signed_qty: float, price: float) -> float:
        """Apply a fill of ``signed_qty`` at ``price``; return the PnL it realizes."""
        q = self.quantity
        realized = 0.0
        if q == 0.0 or (q > 0) == (signed_qty > 0):
            new_q = q + signed_qty
            self.avg_price = (self.avg_price * abs(q) + price * abs(signed_qty)) / abs(new_q)
            self.quantity = new_q
            return 0.0
        closed = min(abs(q), abs(signed_qty))
        realized = closed * (price - self.avg_price) * (1.0 if q > 0 else -1.0)
        new_q = q + signed_qty
        if abs(new_q) < _EPS:
            new_q = 0.0
            self.avg_price = 0.0
        elif (new_q > 0) != (q > 0):
            self.avg_price = price  # flipped through zero: the remainder opens at this price
        self.quantity = new_q
        self.realized_pnl += realized
        return realized


class ClosedTrade(NamedTuple):
    """A round trip: from flat to flat (or to a flip) in one symbol."""

    symbol: str
    direction: int  # +1 long, -1 short
    entry_ns: int
    exit_ns: int
    max_quantity: float
    pnl: float  # realized PnL net of fees


class _OpenTrade:
    __slots__ = ("direction", "entry_ns", "fees", "max_quantity", "realized")

    def __init__(self, direction: int, entry_ns: int) -> None:
        self.direction = direction
        self.entry_ns = entry_ns
        self.max_quantity = 0.0
        self.realized = 0.0
        self.fees = 0.0


class Portfolio:
    """Cash, positions, fees, traded notional and round trips of one account."""

    def __init__(self, starting_cash: float) -> None:
        self.starting_cash = starting_cash
        self.cash = starting_cash
        self.total_fees = 0.0
        self.traded_notional = 0.0
        self.n_fills = 0
        self._positions: dict[str, Position] = {}
        self._open_positions: dict[str, Position] = {}
        self._last_price: dict[str, float] = {}
        self._open_trades: dict[str, _OpenTrade] = {}
        self.closed_trades: list[ClosedTrade] = []

    # -- queries ----------------------------------------------------------------------------
    def position(self, symbol: str) -> float:
        """Signed quantity held in ``symbol`` (0.0 when flat or unknown)."""
        pos = self._open_positions.get(symbol)
        return pos.quantity if pos is not None else 0.0

    def get_position(self, symbol: str) -> Position | None:
        """The ``Position`` record of ``symbol`` if it ever traded."""
        return self._positions.get(symbol)

    def positions(self) -> dict[str, Position]:
        """Every position that ever traded, flat ones included."""
        return dict(self._positions)

    def last_prices(self) -> dict[str, float]:
        """The last price marked for every symbol seen (a copy)."""
        return dict(self._last_price)

    def last_price(self, symbol: str) -> float | None:
        """The last marked price of ``symbol``, or None before its first bar."""
        return self._last_price.get(symbol)

    @property
    def has_open_positions(self) -> bool:
        """True when any symbol has a non-zero position."""
        return bool(self._open_positions)

    def equity(self) -> float:
        """Cash plus the market value of open positions at their last prices."""
        eq = self.cash
        for pos in self._open_positions.values():
            eq += pos.quantity * pos.last_price
        return eq

    def gross_exposure(self) -> float:
        """Σ |quantity × last price| over open positions."""
        return sum(abs(p.quantity * p.last_price) for p in self._open_positions.values())

    def realized_pnl(self) -> float:
        """Realized PnL over all symbols, before fees."""
        return sum(p.realized_pnl for p in self._positions.values())

    def unrealized_pnl(self) -> float:
        """Unrealized PnL of open positions at their last prices."""
        return sum(p.unrealized_pnl for p in self._open_positions.values())

    # -- updates ----------------------------------------------------------------------------
    def mark(self, symbol: str, price: float) -> float:
        """Mark ``symbol`` at ``price`` (the bar's close); return the new equity."""
        self._last_price[symbol] = price
        open_positions = self._open_positions
        if not open_positions:
            return self.cash
        pos = open_positions.get(symbol)
        if pos is not None:
            pos.last_price = price
            if len(open_positions) == 1:  # same arithmetic as equity(), one call less
                return self.cash + pos.quantity * price
        return self.equity()

    def apply_fill(self, fill: Fill) -> None:
        """Book a fill: cash, position, fees, and round-trip bookkeeping."""
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        notional = fill.quantity * fill.price
        self.cash -= signed * fill.price + fill.fee
        self.total_fees += fill.fee
        self.traded_notional += notional
        self.n_fills += 1
        pos = self._positions.get(fill.symbol)
        if pos is None:
            pos = self._positions[fill.symbol] = Position(fill.symbol)
        before = pos.quantity
        realized = pos.apply(signed, fill.price)
        pos.last_price = self._last_price.get(fill.symbol, fill.price)
        if pos.quantity == 0.0:
            self._open_positions.pop(fill.symbol, None)
        else:
            self._open_positions[fill.symbol] = pos
        self._track_trade(fill, before, pos.quantity, realized)

    def _track_trade(self, fill: Fill, before: float, after: float, realized: float) -> None:
        symbol = fill.symbol
        trade = self._open_trades.get(symbol)
        if trade is None:
            trade = self._open_trades[symbol] = _OpenTrade(1 if after > 0 else -1, fill.ts_ns)
        trade.realized += realized
        trade.fees += fill.fee
        flipped = before != 0.0 and after != 0.0 and (after > 0) != (before > 0)
        if not flipped and abs(after) > trade.max_quantity:
            trade.max_quantity = abs(after)
        if after == 0.0 or flipped:
            size = trade.max_quantity if trade.max_quantity > abs(before) else abs(before)
            pnl = trade.realized - trade.fees
            self.closed_trades.append(
                ClosedTrade(symbol, trade.direction, trade.entry_ns, fill.ts_ns, size, pnl)
            )
            del self._open_trades[symbol]
            if after != 0.0:  # flipped through zero: the remainder is a new round trip
                new = self._open_trades[symbol] = _OpenTrade(1 if after > 0 else -1, fill.ts_ns)
                new.max_quantity = abs(after)
