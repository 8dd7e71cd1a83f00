"""Performance metrics from a close-marked equity curve and closed round trips.

Annualisation uses the observed bar rate: ``periods_per_year = n_returns / elapsed_years``,
which gives ~252 for exchange daily bars and ~525,960 for 24/7 minute bars without guessing
a calendar. Sharpe and Sortino assume a zero risk-free rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ultrathink.portfolio.portfolio import ClosedTrade

_NS_PER_YEAR = 365.25 * 86_400 * 1e9
#: the shortest curve whose return is annualised (one day)
_MIN_CAGR_YEARS = 1.0 / 365.25
#: the largest exponent math.exp takes
_MAX_EXP = 709.0


@dataclass(frozen=True)
class Metrics:
    """Summary statistics of one run (fractions, not percent, unless the name says ``_pct``)."""

    start_equity: float
    final_equity: float
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_duration_bars: int
    max_drawdown_duration_days: float
    n_trades: int
    win_rate: float
    profit_factor: float
    exposure: float
    turnover: float
    total_fees: float
    periods_per_year: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict, NaN/inf replaced by None-free floats for JSON (inf -> large sentinel)."""
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(value: float | int) -> float | int:
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0 if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


def drawdown_series(equity: np.ndarray) -> np.ndarray:
    """Drawdown at each point as a fraction of the running peak (0 at a new high)."""
    if equity.size == 0:
        return equity.astype(np.float64)
    peak = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, 1.0 - equity / peak, 0.0)


def _max_drawdown_duration(equity: np.ndarray, ts_ns: np.ndarray) -> tuple[int, float]:
    """Longest stretch below a previous peak: (bars, days) from the peak to recovery or end."""
    if equity.size < 2:
        return 0, 0.0
    under = equity < np.maximum.accumulate(equity)
    if not under.any():
        return 0, 0.0
    edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # stop exclusive
    k = int(np.argmax(stops - starts))
    peak = starts[k] - 1  # the bar before going under is the peak (bar 0 is never under)
    end = min(stops[k], equity.size - 1)  # the recovery bar, or the last bar
    return int(end - peak), float(ts_ns[end] - ts_ns[peak]) / 86_400e9


def _trade_stats(trades: Sequence[ClosedTrade]) -> tuple[float, float]:
    if not trades:
        return 0.0, 0.0
    pnl = np.array([t.pnl for t in trades])
    wins = pnl[pnl > 0].sum()
    losses = -pnl[pnl < 0].sum()
    win_rate = float((pnl > 0).mean())
    profit_factor = float(wins / losses) if losses > 0 else (math.inf if wins > 0 else 0.0)
    return win_rate, profit_factor


def compute_metrics(
    ts_ns: np.ndarray,
    equity: np.ndarray,
    exposure_flags: np.ndarray,
    trades: Sequence[ClosedTrade],
    traded_notional: float,
    total_fees: float,
    start_equity: float,
) -> Metrics:
    """Compute run metrics.

    Parameters
    ----------
    ts_ns, equity : np.ndarray
        The close-marked equity curve (one point per distinct timestamp).
    exposure_flags : np.ndarray
        Bool per point: True when any position was open at that close.
    trades : sequence of ClosedTrade
        Closed round trips.
    traded_notional, total_fees, start_equity : float
        Totals from the portfolio.
    """
    final = float(equity[-1]) if equity.size else start_equity
    total_return = final / start_equity - 1.0
    elapsed_years = float(ts_ns[-1] - ts_ns[0]) / _NS_PER_YEAR if equity.size > 1 else 0.0
    rets = np.diff(equity) / equity[:-1] if equity.size > 1 else np.empty(0)
    ppy = rets.size / elapsed_years if elapsed_years > 0 else 0.0
    # annualised only over a day or more: a live session of seconds would raise its return
    # to the power of millions (an OverflowError); the exponent is capped where exp() ends
    cagr = (
        math.expm1(min(math.log(final / start_equity) / elapsed_years, _MAX_EXP))
        if elapsed_years >= _MIN_CAGR_YEARS and final > 0
        else 0.0
    )
    vol = float(rets.std(ddof=1)) if rets.size > 1 else 0.0
    mean = float(rets.mean()) if rets.size else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2))) if rets.size else 0.0
    sharpe = mean / vol * math.sqrt(ppy) if vol > 0 else 0.0
    sortino = mean / downside * math.sqrt(ppy) if downside > 0 else 0.0
    dd = drawdown_series(equity)
    dd_bars, dd_days = _max_drawdown_duration(equity, ts_ns)
    win_rate, profit_factor = _trade_stats(trades)
    avg_equity = float(equity.mean()) if equity.size else start_equity
    return Metrics(
        start_equity=start_equity,
        final_equity=final,
        total_return=total_return,
        cagr=cagr,
        annual_volatility=vol * math.sqrt(ppy),
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=float(dd.max()) if dd.size else 0.0,
        max_drawdown_duration_bars=dd_bars,
        max_drawdown_duration_days=dd_days,
        n_trades=len(trades),
        win_rate=win_rate,
        profit_factor=profit_factor,
        exposure=float(exposure_flags.mean()) if exposure_flags.size else 0.0,
        turnover=traded_notional / avg_equity if avg_equity > 0 else 0.0,
        total_fees=total_fees,
        periods_per_year=ppy,
    )
