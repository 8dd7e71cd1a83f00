"""backtesting.py side of the sweep: the sma_cross grid with ``Backtest.optimize``.

Runs in the sweep env (``.venv-sweep``)::

    bench/peers/.venv-sweep/bin/python bench/peers/sweep_backtesting.py \\
        --data bench/peers/data/sp500.parquet > work/sweep-backtesting.json

Semantics, matched to ULTRATHINK's ``ultrathink backtest --strategy sma_cross`` (zero costs,
``--all-in`` sizing, 100,000 cash):
- SMA(fast), SMA(slow) of closes (``pd.Series.rolling(n).mean()``, the docs' ``SMA``);
  diff = fast - slow; buy on ``prev <= 0 < diff``, go flat on ``prev >= 0 > diff``, where
  prev and diff are the differences of two consecutive bars that both have SMA(slow).
  backtesting.py starts calling ``next()`` at bar index ``slow`` (its warm-up is the first
  non-NaN index of the slowest indicator, + 1), so its first comparison is bar slow-1 vs
  bar slow: ULTRATHINK's first comparison too.
- Size decided at the signal bar's close: ``floor(equity / close)`` whole units (when
  flat, equity = cash: ULTRATHINK's ``order_size`` capped by ``affordable_qty``);
  the exit sells the whole position (``position.close()``).
- Market orders fill at the NEXT bar's open (``trade_on_close=False``, the default).
- ULTRATHINK fills the buy even when the next open gapped above the signal close, taking
  cash slightly below zero; backtesting.py cancels an order that the margin cannot cover.
  ``margin=0.5`` (2x buying power) lets those fills through; with explicit unit sizes it
  changes nothing else (no cost, equity = cash + open P&L as before, margin call only at
  equity <= 0, never reached here).
- No position is closed at the end (``finalize_trades=False``, the default): the final
  equity marks the open position at the last close, as ULTRATHINK's does, and only closed
  trades are counted (``# Trades``), as in ULTRATHINK's ``n_trades``.
- Metric: ``Equity Final [$] / cash - 1`` (the same number as ``Return [%] / 100``).

Timed (``time.perf_counter``): the ``bt.optimize(...)`` call, i.e. the whole grid through
backtesting.py's own multiprocessing (a fork ``Pool`` of ``os.cpu_count()`` workers; 2 on this
machine; ``--processes 1`` for one worker), the per-point stats and heatmap, and the extra
``run()`` of the best point that ``optimize`` does to return its stats. Not timed: imports,
reading the file, building the DataFrame and the ``Backtest``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from run()/optimize()

import backtesting
import numpy as np
import pandas as pd
from backtesting import Backtest, Strategy
from sweep_common import FAST, METRIC, SLOW, Bars, arg_parser, best_of, emit, grid, key

_EPS = 1e-9  # ULTRATHINK's sizing rounds floor(qty + 1e-9) (decision/sizing.py)


def sma(values: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(values).rolling(n).mean().to_numpy()


class SmaCross(Strategy):
    fast = 10
    slow = 30

    def init(self) -> None:
        close = self.data.Close
        self.sma_fast = self.I(sma, close, self.fast)
        self.sma_slow = self.I(sma, close, self.slow)

    def next(self) -> None:
        prev = self.sma_fast[-2] - self.sma_slow[-2]
        diff = self.sma_fast[-1] - self.sma_slow[-1]
        if prev <= 0.0 < diff:
            if not self.position:
                size = math.floor(self.equity / self.data.Close[-1] + _EPS)
                if size >= 1:
                    self.buy(size=size)
        elif prev >= 0.0 > diff and self.position:
            self.position.close()


def main() -> int:
    p = arg_parser(__doc__)
    p.add_argument(
        "--processes", type=int, default=0, help="optimize's pool size (0: its default, all cores)"
    )
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # "trades remain open", "Searching for best of 342"
    os.environ["PYTHONWARNINGS"] = "ignore"  # in the forked workers too

    bars = Bars(args.data)
    df = pd.DataFrame(
        {"Open": bars.open, "High": bars.high, "Low": bars.low, "Close": bars.close,
         "Volume": bars.volume},
        index=pd.DatetimeIndex(pd.to_datetime(bars.ts, utc=True).tz_localize(None), name="Date"),
    )  # fmt: skip
    bt = Backtest(df, SmaCross, cash=args.cash, commission=0.0, margin=0.5)
    if args.processes:
        n = args.processes
        backtesting.Pool = lambda *a, **k: multiprocessing.get_context("fork").Pool(n)
    workers = args.processes or os.cpu_count() or 1

    cash = args.cash
    calls: list[tuple[float, int]] = []

    def total_return(stats: pd.Series) -> float:
        # called in this process, in grid order, for every point that closed a trade (the
        # workers return None for the others and strip the "_strategy" entry, so the
        # trade counts are matched to the points by that order below)
        value = float(stats["Equity Final [$]"]) / cash - 1.0
        calls.append((value, int(stats["# Trades"])))
        return value

    t0 = time.perf_counter()
    stats, heatmap = bt.optimize(
        fast=list(FAST),
        slow=list(SLOW),
        constraint=lambda p: p.fast < p.slow,
        maximize=total_return,
        return_heatmap=True,
    )
    seconds = time.perf_counter() - t0

    per_point = {key(int(f), int(s)): float(v) for (f, s), v in heatmap.items()}
    if list(per_point) != [key(f, s) for f, s in grid()]:
        raise SystemExit(f"the heatmap's points are not the grid's ({len(per_point)} points)")
    if any(np.isnan(v) for v in per_point.values()) or len(calls) != len(per_point):
        raise SystemExit("some points closed no trade (backtesting.py gives them no stats)")
    if any(v != per_point[k] for (v, _), k in zip(calls, per_point, strict=True)):
        raise SystemExit("the maximize calls are not in grid order")
    per_point_n_trades = {k: n for (_, n), k in zip(calls, per_point, strict=True)}
    best_k, best_v = best_of(per_point)
    bf, bs = (int(x) for x in best_k.split("/"))
    own = stats["_strategy"]
    emit(
        {
            "engine": "backtesting.py",
            "version": backtesting.__version__,
            "points": len(per_point),
            "seconds": seconds,
            "backtests_per_s": len(per_point) / seconds,
            "timed": "Backtest.optimize(...) over the grid: its process pool "
            f"({workers} workers), every point's run and stats, the heatmap and its extra run "
            "of the best point; not imports, file reading, DataFrame and Backtest construction",
            "processes": workers,
            "metric": METRIC,
            "best": {"fast": bf, "slow": bs},
            "best_value": best_v,
            "n_trades": per_point_n_trades[best_k],
            "optimize_best": {"fast": int(own.fast), "slow": int(own.slow)},
            "optimize_best_return_pct": float(stats["Return [%]"]),
            "n_bars": len(bars),
            "data_sha256": bars.digest(),
            "settings": {
                "cash": args.cash,
                "commission": 0.0,
                "margin": 0.5,
                "trade_on_close": False,
                "finalize_trades": False,
            },
            "per_point": per_point,
            "per_point_n_trades": per_point_n_trades,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
