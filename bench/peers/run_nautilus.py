"""NautilusTrader side of the peer comparison: SMA(fast)/SMA(slow) cross, long only.

Runs in the NautilusTrader-only env (``.venv-nt``, Python >= 3.12). Low-level API:
``BacktestEngine`` with one venue ``SIM`` (HEDGING OMS by default, CASH account, L1 book,
bar execution on), one hand-built ``Equity`` ``SYN.SIM`` (price precision 12, lot 1,
maker/taker fee 0),
bar type ``SYN.SIM-1-MINUTE-LAST-EXTERNAL``. The file labels bars by their open time, so
``ts_event`` = open and ``ts_init`` = open + 60 s (NautilusTrader's convention for bar
execution: a bar is processed at its close).

Strategy: NautilusTrader's own ``SimpleMovingAverage`` indicators registered for the bars;
once SMA(slow) is initialized (bar ``slow - 1``), on every later bar it compares the sign of
fast - slow with the previous bar's — the same first comparison ``sma_cross`` makes. Cross
up and flat: market BUY qty; cross down and long: market SELL qty.

Fill timing (NautilusTrader has no "fill at next bar's open" mode with bars only): a market
order sent from ``on_bar`` fills at once against the simulated book, i.e. at the CLOSE of
the signal bar, at that bar's ``ts_init`` = its close time = the next bar's open time. The
other engines fill the same order at the next bar's OPEN at that same instant; the synthetic
data has open[t+1] == close[t] on every bar, so the prices agree too. The driver checks both.

Optimisations (in NautilusTrader's favour): log level ERROR, ``run_analysis=False``, HEDGING
OMS — each round trip is its own position; with NETTING the one reused position is
snapshotted (pickled) on every reopen and the same 1,000,000-bar run took ~3x longer. The
trades are identical either way (``--oms netting`` to check).
Timed: ``engine.run()`` only. Not timed: building the engine, instrument and the
1,000,000 ``Bar`` objects (``BarDataWrangler``) and ``add_data`` (which sorts them).
Fills are read after the run from the cache's orders: every ``OrderFilled`` event, merged
per order (see ``main``).
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nautilus_trader
import numpy as np
from common import BAR_NS, Bars, arg_parser, write_result
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.indicators import SimpleMovingAverage
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import InstrumentId, Symbol, TraderId, Venue
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.persistence.wranglers import BarDataWrangler
from nautilus_trader.trading.strategy import Strategy

PRICE_PRECISION = 12  # the file's prices are full float64: keep 12 decimals (raw i128 mode)


class SmaCrossConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    fast: int = 10
    slow: int = 30
    qty: Decimal = Decimal(100)
    hedging: bool = False


class SmaCross(Strategy):
    def __init__(self, config: SmaCrossConfig) -> None:
        super().__init__(config)
        self.fast = SimpleMovingAverage(config.fast)
        self.slow = SimpleMovingAverage(config.slow)
        self.prev: float | None = None
        self.iid = config.instrument_id
        self.hedging = config.hedging

    def on_start(self) -> None:
        self.qty = self.cache.instrument(self.iid).make_qty(self.config.qty)
        self.register_indicator_for_bars(self.config.bar_type, self.fast)
        self.register_indicator_for_bars(self.config.bar_type, self.slow)
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        if not self.slow.initialized:
            return
        diff = self.fast.value - self.slow.value
        prev = self.prev
        self.prev = diff
        if prev is None:
            return
        if prev <= 0.0 < diff:
            if self.portfolio.is_flat(self.iid):
                self.submit_order(self.order_factory.market(self.iid, OrderSide.BUY, self.qty))
        elif prev >= 0.0 > diff and self.portfolio.is_net_long(self.iid):
            if self.hedging:  # the SELL must name the position it closes
                for position in self.cache.positions_open(instrument_id=self.iid):
                    self.close_position(position)
            else:
                self.submit_order(self.order_factory.market(self.iid, OrderSide.SELL, self.qty))


def main() -> int:
    p = arg_parser(__doc__)
    p.add_argument(
        "--no-trade-analyzer",
        action="store_true",
        help="diagnostic only: make PortfolioAnalyzer.record_trade a no-op (see README)",
    )
    p.add_argument("--oms", choices=("netting", "hedging"), default="hedging")
    args = p.parse_args()
    if args.no_trade_analyzer:
        # The portfolio appends every closed position's PnL to a pandas Series with
        # pd.concat (O(n) per trade, O(n^2) per run); this measures the engine without it.
        from nautilus_trader.analysis.analyzer import PortfolioAnalyzer

        PortfolioAnalyzer.record_trade = lambda self, *a, **k: None
    t0 = time.perf_counter()
    bars = Bars(args.data)
    venue = Venue("SIM")
    iid = InstrumentId(Symbol(bars.symbol), venue)
    instrument = Equity(
        instrument_id=iid,
        raw_symbol=Symbol(bars.symbol),
        currency=USD,
        price_precision=PRICE_PRECISION,
        price_increment=Price(10.0**-PRICE_PRECISION, PRICE_PRECISION),
        lot_size=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
    )
    bar_type = BarType.from_str(f"{iid}-1-MINUTE-LAST-EXTERNAL")
    # BarDataWrangler.process() minus its pandas round trip (whose arrays are read-only
    # under pandas 3 copy-on-write): the same per-bar ``_build_bar`` over writable arrays
    values = np.column_stack([getattr(bars, k) for k in ("open", "high", "low", "close",
                                                          "volume")])  # fmt: skip
    ts_event = bars.ts.astype(np.uint64)
    ts_init = ts_event + np.uint64(BAR_NS)
    wrangler = BarDataWrangler(bar_type, instrument)
    nt_bars = list(map(wrangler._build_bar, values, ts_event.tolist(), ts_init.tolist()))
    del values

    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("PEERS-001"),
            logging=LoggingConfig(log_level="ERROR"),
            run_analysis=False,
        )
    )
    engine.add_venue(
        venue=venue,
        oms_type=OmsType.HEDGING if args.oms == "hedging" else OmsType.NETTING,
        account_type=AccountType.CASH,
        base_currency=USD,
        starting_balances=[Money(args.cash, USD)],
        bar_execution=True,
    )
    engine.add_instrument(instrument)
    engine.add_data(nt_bars)
    del nt_bars
    engine.add_strategy(
        SmaCross(
            SmaCrossConfig(
                instrument_id=iid,
                bar_type=bar_type,
                fast=args.fast,
                slow=args.slow,
                qty=Decimal(str(args.qty)),
                hedging=args.oms == "hedging",
            )
        )
    )
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    engine.run()
    run_s = time.perf_counter() - t0

    # One execution per order, as the other engines report them: a market order larger than
    # the L1 size the bar leaves at its close (volume / 4) fills in two OrderFilled events,
    # the rest one tick (1e-12) worse; quantities are summed, prices volume-weighted.
    fills = []
    statuses: dict[str, int] = {}
    n_events = n_split = 0
    for order in engine.cache.orders():
        statuses[order.status_string()] = statuses.get(order.status_string(), 0) + 1
        events = [e for e in order.events if isinstance(e, OrderFilled)]
        if not events:
            continue
        n_events += len(events)
        n_split += len(events) > 1
        qty = sum(e.last_qty.as_double() for e in events)
        notional = sum(e.last_qty.as_double() * e.last_px.as_double() for e in events)
        side = "BUY" if events[0].order_side == OrderSide.BUY else "SELL"
        if events[0].ts_event != events[-1].ts_event:
            raise SystemExit(f"order {order.client_order_id} filled over several instants")
        fills.append([events[-1].ts_event, side, qty, notional / qty])
    fills.sort(key=lambda f: f[0])
    engine.dispose()
    write_result(
        args.out,
        {
            "engine": "nautilus_trader",
            "trade_analyzer": not args.no_trade_analyzer,
            "oms": args.oms,
            "version": nautilus_trader.__version__,
            "n_bars": len(bars),
            "load_s": load_s,
            "run_s": run_s,
            "orders": statuses,
            "n_fill_events": n_events,
            "n_orders_filled_in_two_or_more_events": n_split,
            "fills": fills,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
