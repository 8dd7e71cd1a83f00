"""Walk-forward windows over one run, and the objective metrics of a slice of it.

The data's timeline is cut into ``n_windows + 1`` segments of equal bar counts. Window *i*
(1..n) scores out of sample on segment *i*; its in-sample part is every segment before it
(``anchored``) or only the one before it (``rolling``). A trial's parameters are fixed, so
one continuous backtest gives every window: the metrics of a window are those of its slice
of the equity curve and of the round trips that closed in it. The strategy is warm at every
window's start, as it would be if it had traded the data before it.

Metrics after costs (the backtest's costs), per slice: ``sharpe``, ``sortino``, ``calmar``
(annualised return over max drawdown), ``total_return``, ``profit_factor`` (gross profit
over gross loss of the round trips closed in the slice, capped at 10, and 0 when none
won), ``max_drawdown`` (lower is better) and ``n_trades``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.portfolio.metrics import drawdown_series

#: objective name -> "maximize" or "minimize"
OBJECTIVES: dict[str, str] = {
    "sharpe": "maximize",
    "sortino": "maximize",
    "calmar": "maximize",
    "total_return": "maximize",
    "profit_factor": "maximize",
    "max_drawdown": "minimize",
}
_NS_PER_YEAR = 365.25 * 86_400 * 1e9
#: at most this many returns per trial are kept for the DSR and PBO (longer runs are summed
#: into equal buckets of consecutive bars)
MAX_RETURNS = 10_000

#: a profit factor above this (or with no losing trade) counts as this, so one lucky trade
#: cannot dominate a study
PROFIT_FACTOR_CAP = 10.0

Scheme = Literal["anchored", "rolling"]


def parse_objectives(text: str) -> tuple[str, ...]:
    """``"sharpe,max_drawdown"`` → the names, checked (one name: a single objective)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError("--objective is empty; use one or more of " + ", ".join(OBJECTIVES))
    for name in names:
        if name not in OBJECTIVES:
            raise ConfigError(
                f"--objective {name!r}: a strategy study can optimise " + ", ".join(OBJECTIVES)
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--objective names {text!r} twice")
    return names


@dataclass(frozen=True)
class Window:
    """Bar-index ranges [start, stop) of the equity curve."""

    index: int
    is_start: int
    is_stop: int
    oos_start: int
    oos_stop: int


def make_windows(n_points: int, n_windows: int, scheme: Scheme) -> list[Window]:
    """Windows over an equity curve of ``n_points`` points."""
    if n_windows < 1:
        raise ConfigError(f"--windows must be at least 1, was {n_windows}")
    if scheme not in ("anchored", "rolling"):
        raise ConfigError(f"--scheme must be anchored or rolling, was {scheme!r}")
    size = n_points // (n_windows + 1)
    if size < 20:
        raise ConfigError(
            f"{n_points:,} bars are too few for {n_windows} walk-forward windows "
            f"(each segment needs 20 bars or more): use fewer --windows or more data"
        )
    edges = [i * size for i in range(n_windows + 1)] + [n_points]
    return [
        Window(
            index=i,
            is_start=0 if scheme == "anchored" else edges[i - 1],
            is_stop=edges[i],
            oos_start=edges[i],
            oos_stop=edges[i + 1],
        )
        for i in range(1, n_windows + 1)
    ]


def slice_metrics(
    ts_ns: np.ndarray,
    equity: np.ndarray,
    exit_ns: np.ndarray,
    pnl: np.ndarray,
    start: int,
    stop: int,
    periods_per_year: float,
) -> dict[str, float]:
    """The objective metrics of the equity points ``[start, stop)``.

    Returns are measured from the point before ``start`` (when there is one), so the first
    bar of the slice counts; ``exit_ns``/``pnl`` are the run's round trips.
    """
    first = max(start - 1, 0)
    eq = equity[first:stop]
    rets = np.diff(eq) / eq[:-1] if len(eq) > 1 else np.empty(0)
    mean = float(rets.mean()) if rets.size else 0.0
    vol = float(rets.std(ddof=1)) if rets.size > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2))) if rets.size else 0.0
    root = math.sqrt(periods_per_year) if periods_per_year > 0 else 0.0
    total = float(eq[-1] / eq[0] - 1.0) if len(eq) > 1 and eq[0] > 0 else 0.0
    years = float(ts_ns[stop - 1] - ts_ns[first]) / _NS_PER_YEAR if stop - 1 > first else 0.0
    annual = (1.0 + total) ** (1.0 / years) - 1.0 if years > 0 and total > -1.0 else total
    max_dd = float(drawdown_series(eq).max()) if len(eq) else 0.0
    lo, hi = ts_ns[start], ts_ns[stop - 1]
    closed = pnl[(exit_ns >= lo) & (exit_ns <= hi)]
    gains, losses = float(closed[closed > 0].sum()), float(-closed[closed < 0].sum())
    profit_factor = min(gains / losses, PROFIT_FACTOR_CAP) if losses > 0 else 0.0
    if losses == 0 and gains > 0:
        profit_factor = PROFIT_FACTOR_CAP  # no losing round trip: infinite, capped
    return {
        "sharpe": mean / vol * root if vol > 0 else 0.0,
        "sortino": mean / downside * root if downside > 0 else 0.0,
        "calmar": annual / max_dd if max_dd > 0 else 0.0,
        "total_return": total,
        "profit_factor": profit_factor,
        "max_drawdown": max_dd,
        "n_trades": float(len(closed)),
    }


def window_scores(result: Any, windows: Sequence[Window]) -> list[dict[str, dict[str, float]]]:
    """``[{"is": metrics, "oos": metrics}, …]`` of a run, one per window."""
    ts, equity = result.ts_ns, result.equity
    exit_ns = np.array([t.exit_ns for t in result.trades], dtype=np.int64)
    pnl = np.array([t.pnl for t in result.trades], dtype=np.float64)
    ppy = result.metrics.periods_per_year
    return [
        {
            "is": slice_metrics(ts, equity, exit_ns, pnl, w.is_start, w.is_stop, ppy),
            "oos": slice_metrics(ts, equity, exit_ns, pnl, w.oos_start, w.oos_stop, ppy),
        }
        for w in windows
    ]


def bucketed_returns(equity: np.ndarray, max_points: int = MAX_RETURNS) -> np.ndarray:
    """Per-bar simple returns of the curve, summed into at most ``max_points`` buckets of
    consecutive bars (the same edges for every trial of a study, which share the data)."""
    rets = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.empty(0)
    if len(rets) <= max_points:
        return rets
    edges = np.linspace(0, len(rets), max_points + 1).astype(np.int64)
    return np.add.reduceat(rets, edges[:-1])
