"""A standalone HTML report of one run: metrics, interactive charts and the trades.

One file that opens offline: plotly.js is inlined once (``ultrathink.web.html.page``) and the
charts come from ``ultrathink.web.charts``, each time series reduced to at most
``MAX_POINTS`` points per trace with per-bucket min/max (every drawdown trough kept).

Charts: equity with drawdown and time under water; price with the buy and sell fills (per
symbol, the most traded ``MAX_SYMBOLS``); exposure; monthly returns; the distribution of
trade PnL. ``RunResult`` holds no price series, so the close is drawn only when the caller
passes the run's ``data``; without it the fills are drawn at their own prices. Exposure is the
gross position value over equity: ``|equity - cash| / equity`` with one symbol (exact: cash
plus the position marked at the close is the equity), ``Σ |position × close| / equity`` with
several symbols when ``data`` is given (positions from the fills), else the net
``(equity - cash) / equity``, labelled as such.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ultrathink.data.frame import MarketData
from ultrathink.engine.results import RunResult
from ultrathink.errors import ConfigError
from ultrathink.web import charts
from ultrathink.web.html import page, write_html

MAX_POINTS = 2_000  # per trace: the browser stays responsive on a 1,000,000-bar run
MAX_SYMBOLS = 4  # price charts per report
_MAX_TRADE_ROWS = 200

Section = tuple[str, str, str]  # (title, note, html)


def write_report(result: RunResult, path: str | Path, *, data: MarketData | None = None) -> Path:
    """Write the HTML report of ``result`` to ``path`` and return the path.

    Parameters
    ----------
    result : RunResult
        The run.
    path : str or Path
        The file to write (its directory is created).
    data : MarketData or None
        The run's bars: with them the price chart draws the close, and the exposure of a
        several-symbol run is gross rather than net.

    Raises
    ------
    ConfigError
        ``data`` lacks a symbol the run traded, or the file cannot be written.
    """
    return write_html(Path(path), render(result, data=data))


def render(result: RunResult, *, data: MarketData | None = None) -> str:
    """The report of ``result`` as one HTML page."""
    if data is not None:
        missing = sorted(set(result.symbols) - set(data.symbols))
        if missing:
            raise ConfigError(
                f"report data {data.name!r} lacks the run's symbols {missing}; pass the data "
                "the run was made on"
            )
    title = f"ULTRATHINK {result.mode}: {result.strategy} on {result.data_name}"
    params = html.escape(", ".join(f"{k}={v}" for k, v in result.params.items()) or "defaults")
    summary = (
        f"<p>Parameters: {params}. Run id: {result.run_id}. Data hash: "
        f"<code>{html.escape(result.data_hash[:16])}</code>.</p>"
        f"<h2>Metrics</h2>{_metrics_table(result)}"
    )
    reduced = f"drawn with at most {MAX_POINTS:,} points per trace (each bucket's min and max)"
    ts, eq = result.ts_ns, result.equity
    exposure, exposure_title, exposure_note = _exposure(result, data)
    sections: list[Section] = [
        ("equity, drawdown and time under water",
         f"equity marked at each close; {reduced}",
         charts.figure_div(charts.equity_figure(ts, eq, max_points=MAX_POINTS), "equity")),
        *_price_sections(result, data),
        ("exposure", f"{exposure_note}, at each close; {reduced}",
         charts.figure_div(charts.exposure_figure(ts, exposure, max_points=MAX_POINTS,
                                                  y_title=f"{exposure_title} (%)"), "exposure")),
        ("monthly returns", "change of month-end equity over the previous month-end (the "
         "first month from the first close)",
         charts.figure_div(charts.monthly_returns_figure(ts, eq), "monthly")),
        ("trade PnL", f"PnL per closed trade, net of fees, {len(result.trades):,} trades",
         charts.figure_div(charts.trade_pnl_figure([t.pnl for t in result.trades]), "pnl")),
        ("trades", "", _trades_table(result)),
    ]  # fmt: skip
    return page(title, summary, sections)


def _price_sections(result: RunResult, data: MarketData | None) -> list[Section]:
    counts = dict.fromkeys(result.symbols, 0)
    for fill in result.fills:
        counts[fill.symbol] = counts.get(fill.symbol, 0) + 1
    symbols = sorted(counts, key=lambda s: -counts[s])[:MAX_SYMBOLS]
    left = len(counts) - len(symbols)
    note = "buys ▲ and sells ▼ at their fill prices"
    note += (
        f" over the close; {MAX_POINTS:,} points at most per trace"
        if data is not None
        else "; the close is not drawn (the report was given no price series)"
    )
    if left:
        note += f"; the {MAX_SYMBOLS} most traded of {len(counts)} symbols"
    sections = []
    for i, symbol in enumerate(symbols):
        fills = [(f.ts_ns, f.side.value, f.price, f.quantity)
                 for f in result.fills if f.symbol == symbol]  # fmt: skip
        if data is not None:
            bars = data.for_symbol(symbol)
            ts, close = bars.ts_ns, bars.close
        else:
            ts, close = np.empty(0, np.int64), np.empty(0)
        fig = charts.price_fills_figure(ts, close, fills, symbol=symbol, max_points=MAX_POINTS)
        sections.append((f"{symbol}: price and fills", note, charts.figure_div(fig, f"price{i}")))
    return sections


def _exposure(result: RunResult, data: MarketData | None) -> tuple[np.ndarray, str, str]:
    # (exposure as a fraction of equity, axis title, section note)
    eq = result.equity
    with np.errstate(divide="ignore", invalid="ignore"):
        if len(result.symbols) <= 1 or not result.fills:
            gross = np.abs(eq - result.cash)
        elif data is not None:
            gross = _gross_value(result, data)
        else:
            net = np.where(eq > 0, (eq - result.cash) / eq, np.nan)
            title = "net position value / equity"
            return net, title, f"{title} (the gross needs the price series)"
        title = "gross position value / equity"
        return np.where(eq > 0, gross / eq, np.nan), title, title


def _gross_value(result: RunResult, data: MarketData) -> np.ndarray:
    # Σ |position × close| at each equity point: positions after the fills at or before it
    # (a bar's fills come at its open, before its close), the symbol's last close
    ts = result.ts_ns
    gross = np.zeros(ts.size)
    for symbol in result.symbols:
        fills = [f for f in result.fills if f.symbol == symbol]
        if not fills:
            continue
        f_ts = np.array([f.ts_ns for f in fills], dtype=np.int64)
        order = np.argsort(f_ts, kind="stable")
        signed = np.array([f.quantity * f.side.sign for f in fills])[order]
        at = np.searchsorted(f_ts[order], ts, "right") - 1
        position = np.where(at >= 0, np.cumsum(signed)[np.maximum(at, 0)], 0.0)
        bars = data.for_symbol(symbol)
        last = np.searchsorted(bars.ts_ns, ts, "right") - 1
        close = np.where(last >= 0, bars.close[np.maximum(last, 0)], 0.0)
        gross += np.abs(position * close)
    return gross


def _metrics_table(result: RunResult) -> str:
    rows = [("bars", f"{result.n_bars:,}"), ("bars/s", f"{result.bars_per_s:,.0f}")]
    for key, value in result.metrics.to_dict().items():
        rows.append((key, _fmt(value)))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}"
    return html.escape(f"{value:,}" if isinstance(value, int) else str(value))


def _trades_table(result: RunResult) -> str:
    cols = ("#", "symbol", "dir", "entry", "exit", "qty", "pnl")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    rows = []
    for i, t in enumerate(result.trades[-_MAX_TRADE_ROWS:], 1):
        entry = pd.Timestamp(t.entry_ns, unit="ns", tz="UTC").isoformat()
        exit_ = pd.Timestamp(t.exit_ns, unit="ns", tz="UTC").isoformat()
        side = "long" if t.direction > 0 else "short"
        rows.append(
            f"<tr><td>{i}</td><td>{html.escape(t.symbol)}</td><td>{side}</td><td>{entry}</td>"
            f"<td>{exit_}</td><td>{t.max_quantity:g}</td><td>{t.pnl:,.2f}</td></tr>"
        )
    if not rows:
        return "<p>No closed trades.</p>"
    note = (
        f"<p>Last {_MAX_TRADE_ROWS} of {len(result.trades)} trades.</p>"
        if len(result.trades) > _MAX_TRADE_ROWS
        else ""
    )
    return f"{note}<table>{head}{''.join(rows)}</table>"
