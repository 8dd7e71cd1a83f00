"""The ``StrategyContext`` contract suite (``decision/strategy.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import pytest

from ultrathink.core.enums import OrderType, Side, TimeInForce
from ultrathink.decision.strategy import StrategyContext

#: Moves the market one step: the context's working market orders fill.
MarketStep = Callable[[], None]


class StrategyContextContract(ABC):
    """The ``StrategyContext`` contract: what every strategy may rely on.

    Submits return distinct ids; a working order counts in ``pending_qty`` until it fills
    (then in ``position``, paid from ``cash``) or is cancelled; ``equity`` is cash plus
    positions at their last prices; ``order_size`` is a non-negative whole number of lots;
    ``affordable_buy`` never exceeds the quantity asked and cuts a buy cash cannot cover;
    a cancel of an id that is not working answers False.
    """

    #: the symbol ``make_context`` gives a last price
    symbol: ClassVar[str] = "AAA"
    #: the lot size of the context's sizing
    lot_size: ClassVar[float] = 1.0

    @abstractmethod
    def make_context(self) -> tuple[StrategyContext, MarketStep]:
        """A flat context with cash and a last price for ``symbol``, and its market step."""

    @pytest.fixture
    def rig(self) -> tuple[StrategyContext, MarketStep]:
        """``make_context()``."""
        return self.make_context()

    def _price(self, ctx: StrategyContext) -> float:
        price = ctx.last_price(self.symbol)
        assert price is not None and price > 0, "make_context must price the symbol"
        return price

    def _order(
        self, ctx: StrategyContext, side: Side, quantity: float, limit: float | None = None
    ) -> str:
        kind = OrderType.MARKET if limit is None else OrderType.LIMIT
        return ctx.submit(
            self.symbol, side, quantity, kind, limit, None, TimeInForce.GTC, False, "contract"
        )

    def test_now_ns_is_an_int(self, rig: tuple[StrategyContext, MarketStep]) -> None:
        ctx, _ = rig
        assert isinstance(ctx.now_ns(), int)

    def test_submits_return_distinct_ids(self, rig: tuple[StrategyContext, MarketStep]) -> None:
        ctx, _ = rig
        lot, price = self.lot_size, self._price(ctx)
        ids = [
            self._order(ctx, Side.BUY, lot),
            self._order(ctx, Side.SELL, lot),
            self._order(ctx, Side.BUY, lot, limit=price * 0.95),
        ]
        assert all(isinstance(coid, str) and coid for coid in ids)
        assert len(set(ids)) == len(ids)

    def test_a_flat_context_is_worth_its_cash(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        assert (ctx.position(self.symbol), ctx.pending_qty(self.symbol)) == (0.0, 0.0)
        assert ctx.cash() > 0 and ctx.equity() == pytest.approx(ctx.cash())

    def test_a_filled_buy_moves_from_pending_to_position(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, step = rig
        quantity, cash = 2 * self.lot_size, ctx.cash()
        self._order(ctx, Side.BUY, quantity)
        assert ctx.pending_qty(self.symbol) == pytest.approx(quantity)
        assert ctx.position(self.symbol) == 0.0
        step()
        assert ctx.position(self.symbol) == pytest.approx(quantity)
        assert ctx.pending_qty(self.symbol) == pytest.approx(0.0)
        assert ctx.cash() < cash
        assert ctx.equity() == pytest.approx(ctx.cash() + quantity * self._price(ctx))

    def test_a_filled_sell_goes_short_for_cash(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, step = rig
        quantity, cash = 2 * self.lot_size, ctx.cash()
        self._order(ctx, Side.SELL, quantity)
        assert ctx.pending_qty(self.symbol) == pytest.approx(-quantity)
        step()
        assert ctx.position(self.symbol) == pytest.approx(-quantity)
        assert ctx.pending_qty(self.symbol) == pytest.approx(0.0)
        assert ctx.cash() > cash
        assert ctx.equity() == pytest.approx(ctx.cash() - quantity * self._price(ctx))

    def test_cancel_of_a_working_order_releases_it(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        coid = self._order(ctx, Side.BUY, self.lot_size, limit=self._price(ctx) * 0.95)
        assert ctx.pending_qty(self.symbol) == pytest.approx(self.lot_size)
        assert ctx.cancel(coid) is True
        assert ctx.pending_qty(self.symbol) == pytest.approx(0.0)
        assert ctx.cancel(coid) is False

    def test_cancel_of_an_unknown_id_is_false(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        assert ctx.cancel("never-submitted") is False

    def test_cancel_all_cancels_the_working_orders_of_a_symbol(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        price = self._price(ctx)
        self._order(ctx, Side.BUY, self.lot_size, limit=price * 0.95)
        self._order(ctx, Side.SELL, self.lot_size, limit=price * 1.05)
        assert ctx.cancel_all("NO-SUCH-SYMBOL") == 0
        assert ctx.cancel_all(self.symbol) == 2
        assert ctx.pending_qty(self.symbol) == pytest.approx(0.0)
        assert ctx.cancel_all(None) == 0

    def test_order_size_is_a_whole_number_of_lots(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        for price in (0.0, 0.01, 1.0, 37.3, self._price(ctx), 1e7):
            lots = ctx.order_size(self.symbol, price) / self.lot_size
            assert lots >= 0 and lots == pytest.approx(round(lots)), price

    def test_affordable_buy_never_exceeds_the_quantity_asked(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        lot = self.lot_size
        for current in (0.0, 3 * lot, -5 * lot):
            for quantity in (lot, 10 * lot, 1e12):
                got = ctx.affordable_buy(self.symbol, current, quantity)
                assert 0 <= got <= quantity, (current, quantity, got)

    def test_a_buy_beyond_cash_is_cut_to_what_cash_covers(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        price, cash = self._price(ctx), ctx.cash()
        too_many = float(round(cash / price * 10 / self.lot_size) * self.lot_size)
        got = ctx.affordable_buy(self.symbol, 0.0, too_many)
        assert got < too_many and got * price <= cash * (1 + 1e-9)
        assert ctx.affordable_buy(self.symbol, 0.0, self.lot_size) == self.lot_size

    def test_last_price_is_none_before_any_price(
        self, rig: tuple[StrategyContext, MarketStep]
    ) -> None:
        ctx, _ = rig
        assert ctx.last_price("NO-SUCH-SYMBOL") is None
        assert self._price(ctx) > 0

    def test_audit_takes_free_form_rows(self, rig: tuple[StrategyContext, MarketStep]) -> None:
        ctx, _ = rig
        ctx.audit("contract.check", "a free-form detail")  # returns None, raises nothing
