"""A standalone HTML report of one run: metrics, equity, drawdown and trade plots.

Plots are rendered with matplotlib (Agg backend) to PNG and embedded as base64, so the file
has no external references and opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ultrathink.engine.results import RunResult
from ultrathink.portfolio.metrics import drawdown_series

_MAX_POINTS = 5_000  # plot resolution: the curve is decimated for drawing only
_MAX_TRADE_ROWS = 200


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _decimate(ts: np.ndarray, *series: np.ndarray) -> tuple[np.ndarray, ...]:
    step = max(1, ts.size // _MAX_POINTS)
    times = pd.to_datetime(ts[::step], unit="ns", utc=True)
    return (np.asarray(times), *(s[::step] for s in series))


def _curve_plots(result: RunResult) -> tuple[str, str]:
    dd = drawdown_series(result.equity) * 100.0
    t, eq, ddd = _decimate(result.ts_ns, result.equity, dd)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(t, eq, lw=1.0, color="#1f6feb")
    ax.set_title("Equity (marked at each close)")
    ax.grid(alpha=0.3)
    equity_png = _png(fig)
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.fill_between(t, -ddd, 0, color="#d1242f", alpha=0.5)
    ax.set_title("Drawdown (%)")
    ax.grid(alpha=0.3)
    return equity_png, _png(fig)


def _trade_plot(result: RunResult) -> str:
    pnl = np.array([t.pnl for t in result.trades])
    fig, ax = plt.subplots(figsize=(10, 2.5))
    if pnl.size:
        colors = np.where(pnl >= 0, "#1a7f37", "#d1242f")
        ax.bar(np.arange(pnl.size), pnl, color=colors, width=1.0)
    ax.set_title(f"PnL per closed trade (net of fees), {pnl.size} trades")
    ax.grid(alpha=0.3)
    return _png(fig)


def _metrics_table(result: RunResult) -> str:
    rows = [("bars", f"{result.n_bars:,}"), ("bars/s", f"{result.bars_per_s:,.0f}")]
    for key, value in result.metrics.to_dict().items():
        rows.append((key, f"{value:,.6g}" if isinstance(value, float) else f"{value:,}"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


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
    note = (
        f"<p>Last {_MAX_TRADE_ROWS} of {len(result.trades)} trades.</p>"
        if len(result.trades) > _MAX_TRADE_ROWS
        else ""
    )
    return f"{note}<table>{head}{''.join(rows)}</table>"


def write_report(result: RunResult, path: str | Path) -> Path:
    """Write the HTML report of ``result`` to ``path`` and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    equity_png, dd_png = _curve_plots(result)
    trades_png = _trade_plot(result)
    title = html.escape(f"ULTRATHINK {result.mode}: {result.strategy} on {result.data_name}")
    params = html.escape(", ".join(f"{k}={v}" for k, v in result.params.items()) or "defaults")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ddd;padding:3px 8px;
text-align:right}}table.kv th{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{title}</h1><p>Parameters: {params}. Run id: {result.run_id}. Data hash:
<code>{result.data_hash[:16]}</code>.</p>
<h2>Metrics</h2>{_metrics_table(result)}
<h2>Equity</h2><img alt="equity" src="data:image/png;base64,{equity_png}">
<h2>Drawdown</h2><img alt="drawdown" src="data:image/png;base64,{dd_png}">
<h2>Trades</h2><img alt="trades" src="data:image/png;base64,{trades_png}">
{_trades_table(result)}
</body></html>"""
    out.write_text(page, encoding="utf-8")
    return out
