"""backtrader side of the peer comparison: SMA(fast)/SMA(slow) CrossOver, long only.

Runs in the backtrader-only env (``.venv-bt``). Semantics, matched to ``sma_cross``:
- ``bt.ind.CrossOver(bt.ind.SMA(fast), bt.ind.SMA(slow))``; its first value is on bar
  ``slow`` (0-based), comparing bar ``slow - 1`` (first SMA(slow)) with bar ``slow`` — the
  same first comparison ``sma_cross`` makes;
- cross up and flat: ``buy(size=qty)``; cross down and long: ``close()``;
- market orders fill at the NEXT bar's open (backtrader's default broker: no cheat-on-open,
  no cheat-on-close), zero commission (the default), cash as given.

Optimisations used (all documented backtrader options, all in backtrader's favour):
``preload=True, runonce=True`` (vectorised indicator pass; the defaults) and
``stdstats=False`` (no default Broker/Trades/BuySell observers).

Timed: ``cerebro.run()`` minus the time its data feed spends in ``preload()`` (reading the
bars into backtrader's lines: loading, excluded for every engine), measured inside the feed.
The indicator pass, the bar loop, order matching and notifications are all timed.
Fills are collected in ``notify_order`` (status Completed) with the bar they executed on.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backtrader as bt
from common import Bars, arg_parser, write_result

EPOCH_DATENUM = 719163.0  # bt.date2num(1970-01-01): backtrader's float day numbers
NS_PER_DAY = 86_400_000_000_000


class ArrayFeed(bt.feed.DataBase):
    """A feed over in-memory columns (Python lists); times its own preload."""

    params = (("columns", None),)

    def start(self) -> None:
        super().start()
        self._i = 0
        self._n = len(self.p.columns[0])
        self.preload_s = 0.0

    def preload(self) -> None:
        t0 = time.perf_counter()
        super().preload()
        self.preload_s += time.perf_counter() - t0

    def _load(self) -> bool:
        i = self._i
        if i >= self._n:
            return False
        dt, o, h, lo, c, v = self.p.columns
        lines = self.lines
        lines.datetime[0] = dt[i]
        lines.open[0] = o[i]
        lines.high[0] = h[i]
        lines.low[0] = lo[i]
        lines.close[0] = c[i]
        lines.volume[0] = v[i]
        lines.openinterest[0] = 0.0
        self._i = i + 1
        return True


class SmaCross(bt.Strategy):
    params = (("fast", 10), ("slow", 30), ("qty", 100.0))

    def __init__(self) -> None:
        fast = bt.ind.SMA(self.data.close, period=self.p.fast)
        slow = bt.ind.SMA(self.data.close, period=self.p.slow)
        self.cross = bt.ind.CrossOver(fast, slow)
        self.fills: list[list[object]] = []  # [bar index, side, qty, price]
        self.not_filled: dict[str, int] = {}

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            side = "BUY" if order.isbuy() else "SELL"
            ex = order.executed
            self.fills.append([len(self.data) - 1, side, abs(ex.size), ex.price])
        elif order.status in (order.Canceled, order.Margin, order.Rejected, order.Expired):
            name = order.getstatusname()
            self.not_filled[name] = self.not_filled.get(name, 0) + 1

    def next(self) -> None:
        c = self.cross[0]
        if c > 0.0:
            if not self.position:
                self.buy(size=self.p.qty)
        elif c < 0.0 and self.position:
            self.close()


def main() -> int:
    args = arg_parser(__doc__).parse_args()
    t0 = time.perf_counter()
    bars = Bars(args.data)
    datenum = (bars.ts / NS_PER_DAY + EPOCH_DATENUM).tolist()
    columns = (datenum, *(getattr(bars, k).tolist() for k in ("open", "high", "low", "close")),
               bars.volume.tolist())  # fmt: skip
    cerebro = bt.Cerebro(stdstats=False)
    feed = ArrayFeed(columns=columns, timeframe=bt.TimeFrame.Minutes, compression=1)
    cerebro.adddata(feed)
    cerebro.addstrategy(SmaCross, fast=args.fast, slow=args.slow, qty=args.qty)
    cerebro.broker.setcash(args.cash)
    cerebro.broker.setcommission(commission=0.0)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    (strat,) = cerebro.run(preload=True, runonce=True)
    total_s = time.perf_counter() - t0
    preload_s = feed.preload_s

    # fills on the engine's clock: the bar they executed on, labelled by its open time
    fills = [[int(bars.ts[i]), side, qty, px] for i, side, qty, px in strat.fills]
    write_result(
        args.out,
        {
            "engine": "backtrader",
            "version": bt.__version__,
            "n_bars": len(bars),
            "load_s": load_s + preload_s,
            "run_s": total_s - preload_s,
            "run_incl_preload_s": total_s,
            "preload_s": preload_s,
            "not_filled": strat.not_filled,
            "fills": fills,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
