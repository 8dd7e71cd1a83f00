"""Charts of a run (``web/charts.py``): equity with drawdown and time under water, price with
fills, monthly returns, the PnL of closed trades, exposure, and equity curves compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ultrathink.errors import ConfigError
from ultrathink.web.chart_kit import (
    COLORS,
    SERIES,
    _dates,
    _edges,
    _empty,
    _finish,
    _finite,
    _line,
    _note,
    _reduce_index,
    _series,
)

__all__ = [
    "compare_equity_figure",
    "equity_figure",
    "exposure_figure",
    "monthly_returns_figure",
    "price_fills_figure",
    "trade_pnl_figure",
]

_NS_PER_DAY = 86_400e9

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def equity_figure(ts_ns: Any, equity: Any, *, max_points: int = 2000) -> go.Figure:
    """Equity, drawdown (%) and time under water as three subplots sharing a time axis.

    Parameters
    ----------
    ts_ns : array-like of int
        Times, ns since the epoch (UTC), non-decreasing.
    equity : array-like of float
        Equity at each time.
    max_points : int, default=2000
        Most points drawn per trace.
    """
    ts, eq = _series(ts_ns, equity, "equity")
    if eq.size == 0:
        return _empty("no equity points")
    peak = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd_pct = np.where(peak > 0, eq / peak - 1.0, 0.0) * 100.0
    last_peak = np.maximum.accumulate(np.where(eq >= peak, np.arange(eq.size), 0))
    under_days = (ts - ts[last_peak]) / _NS_PER_DAY
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        row_heights=[0.5, 0.25, 0.25],
        subplot_titles=(
            "equity",
            "drawdown from the running peak (%)",
            "time under water (days since the last peak)",
        ),
    )
    fig.add_trace(_line(ts, eq, "equity", COLORS["equity"], max_points), row=1, col=1)
    fig.add_trace(
        _line(ts, dd_pct, "drawdown %", COLORS["drawdown"], max_points, fill=True), row=2, col=1
    )
    fig.add_trace(
        _line(ts, under_days, "days under water", COLORS["underwater"], max_points, fill=True),
        row=3,
        col=1,
    )
    trough = int(np.nanargmin(dd_pct)) if np.isfinite(dd_pct).any() else 0
    if dd_pct[trough] < 0:
        fig.add_trace(
            go.Scatter(
                x=_dates(ts[trough : trough + 1]),
                y=dd_pct[trough : trough + 1],
                mode="markers+text",
                marker={"color": COLORS["drawdown"], "size": 8},
                text=[f"{dd_pct[trough]:.2f} %"],
                textposition="top right",
                name="deepest drawdown",
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(title_text="time (UTC)", row=3, col=1)
    fig.update_layout(showlegend=False)  # the subplot titles name the traces
    return _finish(fig, height=620, hovermode="x unified")


def price_fills_figure(
    ts_ns: Any,
    close: Any,
    fills: Sequence[Sequence[Any]],
    *,
    symbol: str = "",
    max_points: int = 2000,
) -> go.Figure:
    """The close price with buy and sell fills as two marker traces.

    Parameters
    ----------
    ts_ns, close : array-like
        The price series (ns UTC, non-decreasing); may be empty (fills are drawn alone).
    fills : sequence of (ts_ns, side, price, quantity)
        ``side`` is ``"BUY"`` or ``"SELL"`` (``core.enums.Side`` values).
    symbol : str
        Named on the price axis.
    max_points : int, default=2000
        Most points per trace; beyond it a side keeps each time bucket's lowest and highest
        fill price, and its legend says how many are shown.
    """
    ts, px = _series(ts_ns, close, "close")
    f_ts, f_side, f_px, f_qty = _fills(fills)
    if px.size == 0 and f_ts.size == 0:
        return _empty("no prices and no fills")
    fig = go.Figure()
    if px.size:
        fig.add_trace(_line(ts, px, f"{symbol} close".strip(), COLORS["price"], max_points))
    for side, name, marker in (("BUY", "buys", "triangle-up"), ("SELL", "sells", "triangle-down")):
        pick = np.flatnonzero(f_side == side)
        if pick.size == 0:
            continue
        keep = _reduce_index(f_ts[pick], f_px[pick], max_points)
        idx = pick if keep is None else pick[keep]
        label = name if keep is None else f"{name} ({idx.size:,} of {pick.size:,} shown)"
        fig.add_trace(
            go.Scatter(
                x=_dates(f_ts[idx]),
                y=f_px[idx],
                mode="markers",
                name=label,
                marker={"symbol": marker, "size": 9, "color": COLORS[side.lower()]},
                customdata=f_qty[idx],
                hovertemplate="%{y:.6g} × %{customdata:.6g}<extra>" + name + "</extra>",
            )
        )
    if f_ts.size == 0:
        _note(fig, "no fills")
    elif px.size == 0:
        _note(fig, "no price series given: fills at their prices only")
    fig.update_layout(xaxis_title="time (UTC)", yaxis_title=f"{symbol} price".strip())
    return _finish(fig, height=420, hovermode="closest")


def monthly_returns_figure(ts_ns: Any, equity: Any) -> go.Figure:
    """Heatmap of monthly returns (%), year by month, from month-end equity.

    The first month's return is measured from the first point, so it may cover part of a
    month.
    """
    ts, eq = _series(ts_ns, equity, "equity")
    if eq.size < 2:
        return _empty("not enough equity points for monthly returns")
    months = ts.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    ends = np.append(np.flatnonzero(np.diff(months) != 0), months.size - 1)
    month_eq = eq[ends]
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = (month_eq / np.append(eq[0], month_eq[:-1]) - 1.0) * 100.0
    year0 = int(months[0] // 12)
    years = np.arange(year0, int(months[-1] // 12) + 1)
    z = np.full((years.size, 12), np.nan)
    z[months[ends] // 12 - year0, months[ends] % 12] = rets
    text = [["" if math.isnan(v) else f"{v:.1f}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(_MONTHS),
            y=[str(1970 + y) for y in years],
            text=text,
            texttemplate="%{text}",
            zmid=0.0,
            colorscale="RdYlGn",
            colorbar={"title": {"text": "%"}},
            hovertemplate="%{y} %{x}: %{z:.2f} %<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        yaxis={"autorange": "reversed", "type": "category"}, xaxis_title="month", yaxis_title="year"
    )
    return _finish(fig, height=max(220, 60 + 28 * years.size))


def trade_pnl_figure(pnls: Any) -> go.Figure:
    """Histogram of the PnL of closed trades, gains and losses in their own colours."""
    pnl = _finite(pnls)
    if pnl.size == 0:
        return _empty("no trades")
    edges = _edges(pnl, max_bins=80)
    fig = go.Figure()
    for name, part, color in (
        ("winning", pnl[pnl > 0], "gain"),
        ("losing or flat", pnl[pnl <= 0], "loss"),
    ):
        counts, _ = np.histogram(part, bins=edges)
        fig.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts,
                width=np.diff(edges),
                name=f"{name} ({part.size:,})",
                marker_color=COLORS[color],
                hovertemplate="%{x:.4g}: %{y} trades<extra></extra>",
            )
        )
    fig.add_vline(x=0.0, line_dash="dot", line_color=COLORS["reference"])
    fig.update_layout(
        barmode="stack", bargap=0.05, xaxis_title="PnL per closed trade", yaxis_title="trades"
    )
    return _finish(fig, height=360)


def exposure_figure(
    ts_ns: Any,
    exposure: Any,
    *,
    max_points: int = 2000,
    y_title: str = "gross position value / equity (%)",
) -> go.Figure:
    """Exposure over time; ``exposure`` is a fraction of equity (1.0 is drawn as 100 %)."""
    ts, ex = _series(ts_ns, exposure, "exposure")
    if ex.size == 0:
        return _empty("no exposure points")
    fig = go.Figure(_line(ts, ex * 100.0, "exposure %", COLORS["exposure"], max_points, fill=True))
    fig.update_layout(xaxis_title="time (UTC)", yaxis_title=y_title, showlegend=False)
    return _finish(fig, height=300, hovermode="x unified")


def compare_equity_figure(
    curves: Sequence[tuple[str, Any, Any]], *, max_points: int = 2000
) -> go.Figure:
    """Several equity curves overlaid, each divided by its first value (so each starts at 1.0).

    ``curves`` holds ``(label, ts_ns, equity)``; an empty curve is listed as such.
    """
    fig = go.Figure()
    missing = []
    for i, (label, ts_ns, equity) in enumerate(curves):
        ts, eq = _series(ts_ns, equity, f"equity of {label!r}")
        if eq.size == 0 or not eq[0] > 0:
            missing.append(str(label))
            continue
        fig.add_trace(_line(ts, eq / eq[0], str(label), SERIES[i % len(SERIES)], max_points))
    if not fig.data:
        return _empty("no equity curves to compare")
    if missing:
        _note(fig, "not drawn (no points or a start <= 0): " + ", ".join(missing))
    fig.update_layout(
        xaxis_title="time (UTC)", yaxis_title="equity / first equity (each curve starts at 1.0)"
    )
    return _finish(fig, height=420, hovermode="x unified")


def _fills(fills: Sequence[Sequence[Any]]) -> tuple[np.ndarray, ...]:
    if len(fills) == 0:
        empty = np.empty(0)
        return empty.astype(np.int64), empty.astype(str), empty, empty
    try:
        ts, side, price, qty = zip(*fills, strict=True)
    except (TypeError, ValueError):
        raise ConfigError("fills must be (ts_ns, side, price, quantity) tuples") from None
    sides = np.array([str(s).upper() for s in side])
    bad = sorted(set(sides) - {"BUY", "SELL"})
    if bad:
        raise ConfigError(f"fill side must be BUY or SELL, had {bad}")
    order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable")
    return (
        np.asarray(ts, dtype=np.int64)[order],
        sides[order],
        np.asarray(price, dtype=np.float64)[order],
        np.asarray(qty, dtype=np.float64)[order],
    )
