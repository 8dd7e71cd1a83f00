"""vectorbt side of the sweep: the whole sma_cross grid as columns of one simulation.

Runs in the sweep env (``.venv-sweep``)::

    bench/peers/.venv-sweep/bin/python bench/peers/sweep_vectorbt.py \\
        --data bench/peers/data/sp500.parquet > work/sweep-vectorbt.json

vectorbt's documented way to test a grid is to make every parameter combination a column:
one ``vbt.MA.run`` per window list, one signal array, one ``Portfolio`` simulation over all
columns (README: "testing 10,000 window combinations of a dual SMA crossover strategy").
That is what is timed here, for the 342 points at once.

Semantics, matched to ULTRATHINK's ``ultrathink backtest --strategy sma_cross`` (zero costs,
``--all-in`` sizing, 100,000 cash):
- ``vbt.MA.run(close, window=[...])`` for the fast and the slow window of every column;
  diff = fast - slow; entry on ``prev <= 0 < diff``, exit on ``prev >= 0 > diff`` over two
  consecutive bars (NaN compares false, so the first comparison is bar slow-1 vs bar slow).
  ``ma_crossed_above`` is not used: it differs from this rule only on exact zeros, but the
  rule is ULTRATHINK's.
- A signal on bar t acts at the open of bar t+1 with ``floor(equity / close[t])`` whole
  units, equity = cash when flat (ULTRATHINK sizes at the signal close, fills at the next
  open); the exit sells the whole position at the next open. No position is closed at the
  end; equity is marked at the close.
- ``Portfolio.from_signals`` cannot size at the signal bar's close and fill at the next
  open (its ``size=np.inf`` buys what the cash covers at the fill price), so the simulation
  is ``Portfolio.from_order_func`` with a numba order function doing exactly the above:
  still one call over all columns. Its ``segment_mask`` calls the order function only on
  the bars after a signal (12x faster here than calling it on every bar and column, same
  result; cash, positions and the close-marked value are kept on every bar regardless).
  ``--from-signals`` also times the from_signals way
  (signals shifted one bar, ``price=open``, ``size=np.inf``, ``size_granularity=1``) and
  reports how far its figures are from the exact ones.
- ULTRATHINK fills a buy even when the next open gapped above the signal close, taking cash
  slightly below zero; vectorbt never lets cash go below zero (it shrinks the order). Each
  column therefore starts with 100,000 + ``BUFFER`` cash, the order function sizes from
  cash - ``BUFFER``, and total return = (final value - BUFFER) / 100,000 - 1. The buffer is
  never touched except for those gap-up overdrafts (checked: the minimum cash is reported).
- Closed trades only: ``pf.trades.closed.count()``.

Timed (``time.perf_counter``), ``--repeats`` times (median reported): the two
``MA.run`` calls, the signal arrays, the ``from_order_func`` simulation of every column,
``final_value()`` and the closed-trade counts. Not timed: imports, reading the file, and one
warm-up of the whole pipeline on two columns (numba compiles the order function and the
simulator on first use; reported as ``jit_warmup_s``).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
import vectorbt as vbt
from numba import njit
from sweep_common import METRIC, Bars, arg_parser, best_of, emit, grid, key
from vectorbt.portfolio import nb as pf_nb
from vectorbt.portfolio.enums import NoOrder

BUFFER = 1_000_000.0  # idle cash lent to every column so a gap-up fill is never shrunk
_EPS = 1e-9  # ULTRATHINK's sizing rounds floor(qty + 1e-9) (decision/sizing.py)


@njit
def order_func_nb(c, open_, close, entries, exits, buffer):  # type: ignore[no-untyped-def]
    i = c.i
    if i == 0:
        return NoOrder
    if entries[i - 1, c.col] and c.position_now == 0.0:
        size = np.floor((c.cash_now - buffer) / close[i - 1] + _EPS)
        if size >= 1.0:
            return pf_nb.order_nb(size, open_[i])
    elif exits[i - 1, c.col] and c.position_now > 0.0:
        return pf_nb.order_nb(-c.position_now, open_[i])
    return NoOrder


def signals(close: pd.Series, fast: list[int], slow: list[int]) -> tuple[np.ndarray, np.ndarray]:
    fast_ma = vbt.MA.run(close, window=fast, short_name="fast")
    slow_ma = vbt.MA.run(close, window=slow, short_name="slow")
    diff = fast_ma.ma.to_numpy() - slow_ma.ma.to_numpy()
    prev = np.roll(diff, 1, axis=0)
    prev[0] = np.nan
    with np.errstate(invalid="ignore"):
        entries = (prev <= 0.0) & (diff > 0.0)
        exits = (prev >= 0.0) & (diff < 0.0)
    return entries, exits


def simulate(
    close: pd.Series, open_: np.ndarray, fast: list[int], slow: list[int], cash: float
) -> tuple[vbt.Portfolio, np.ndarray, np.ndarray]:
    entries, exits = signals(close, fast, slow)
    n = len(fast)
    acts = np.zeros_like(entries)  # the (bar, column) cells where an order may be sent
    acts[1:] = entries[:-1] | exits[:-1]
    pf = vbt.Portfolio.from_order_func(
        close.to_frame().iloc[:, [0] * n],  # one column per grid point
        order_func_nb,
        open_, close.to_numpy(), entries, exits, BUFFER,
        init_cash=cash + BUFFER,
        segment_mask=acts,
        freq="1D",
    )  # fmt: skip
    final = pf.final_value().to_numpy()
    trades = pf.trades.closed.count().to_numpy()
    return pf, final, trades


def from_signals_way(
    close: pd.Series, open_: np.ndarray, fast: list[int], slow: list[int], cash: float
) -> tuple[np.ndarray, np.ndarray]:
    entries, exits = signals(close, fast, slow)
    n = len(fast)
    shift = np.zeros_like(entries)
    ent, ext = shift.copy(), shift.copy()
    ent[1:], ext[1:] = entries[:-1], exits[:-1]  # act on the bar after the signal
    pf = vbt.Portfolio.from_signals(
        close.to_frame().iloc[:, [0] * n], ent, ext,
        price=np.broadcast_to(open_[:, None], ent.shape), size=np.inf, size_granularity=1.0,
        init_cash=cash, freq="1D",
    )  # fmt: skip
    return pf.final_value().to_numpy(), pf.trades.closed.count().to_numpy()


def main() -> int:
    p = arg_parser(__doc__)
    p.add_argument("--from-signals", action="store_true", help="also time from_signals")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (median reported)")
    args = p.parse_args()
    bars = Bars(args.data)
    index = pd.DatetimeIndex(pd.to_datetime(bars.ts, utc=True).tz_localize(None), name="Date")
    close = pd.Series(bars.close, index=index, name="Close")
    points = grid()
    fast = [f for f, _ in points]
    slow = [s for _, s in points]

    t0 = time.perf_counter()
    simulate(close, bars.open, fast[:2], slow[:2], args.cash)  # numba compilation
    if args.from_signals:
        from_signals_way(close, bars.open, fast[:2], slow[:2], args.cash)
    jit_s = time.perf_counter() - t0

    runs = []
    for _ in range(args.repeats):  # the pass is short: the median of a few is reported
        t0 = time.perf_counter()
        pf, final, trades = simulate(close, bars.open, fast, slow, args.cash)
        runs.append(time.perf_counter() - t0)
    seconds = statistics.median(runs)

    values = (final - BUFFER) / args.cash - 1.0
    per_point = {key(f, s): float(v) for (f, s), v in zip(points, values, strict=True)}
    n_trades = {key(f, s): int(n) for (f, s), n in zip(points, trades, strict=True)}
    min_cash = float(pf.cash().to_numpy().min()) - BUFFER
    best_k, best_v = best_of(per_point)
    bf, bs = (int(x) for x in best_k.split("/"))
    out = {
        "engine": "vectorbt",
        "version": vbt.__version__,
        "points": len(points),
        "seconds": seconds,
        "backtests_per_s": len(points) / seconds,
        "timed": "median of --repeats passes over the whole grid as columns: 2 MA.run "
        "calls, signal arrays, Portfolio.from_order_func over all columns (one process), "
        "final_value() and closed trade counts; not imports, file reading, nor the numba "
        "warm-up (jit_warmup_s)",
        "repeats_s": runs,
        "jit_warmup_s": jit_s,
        "processes": 1,
        "metric": METRIC,
        "best": {"fast": bf, "slow": bs},
        "best_value": best_v,
        "n_trades": n_trades[best_k],
        "n_bars": len(bars),
        "data_sha256": bars.digest(),
        "settings": {"cash": args.cash, "buffer": BUFFER, "fees": 0.0},
        "min_cash_below_start_buffer": min_cash,
        "per_point": per_point,
        "per_point_n_trades": n_trades,
    }
    if min_cash + BUFFER <= 0:
        raise SystemExit("the cash buffer was exhausted: raise BUFFER")
    if args.from_signals:
        fs_runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fs_final, fs_trades = from_signals_way(close, bars.open, fast, slow, args.cash)
            fs_runs.append(time.perf_counter() - t0)
        fs_s = statistics.median(fs_runs)
        fs_values = fs_final / args.cash - 1.0
        out["from_signals"] = {
            "seconds": fs_s,
            "backtests_per_s": len(points) / fs_s,
            "note": "sizes floor(cash / fill open), not floor(cash / signal close): not "
            "ULTRATHINK's semantics; for the rate of vectorbt's usual path only",
            "max_abs_diff_vs_exact": float(np.max(np.abs(fs_values - values))),
            "points_with_other_n_trades": int(np.sum(fs_trades != trades)),
            "best": dict(zip(("fast", "slow"), points[int(np.argmax(fs_values))], strict=True)),
        }
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
