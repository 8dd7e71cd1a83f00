"""Plotly figures shared by the web dashboard and the static HTML reports.

Every function takes plain numpy arrays, lists and dicts (never a store object or a
``RunResult``) and returns a ``plotly.graph_objects.Figure`` drawn with one template and one
palette. Time series (and many fill markers) are reduced server-side to at most
``max_points`` points per trace with :func:`ultrathink.web.downsample.minmax`, which keeps
every extreme (a drawdown trough is never hidden); ROC curves, monotone, with LTTB; histograms
are binned here, so a figure's size does not grow with the data. Empty inputs give a figure
that says so ("no trades", ...), never an exception; malformed inputs (arrays of different
lengths, an unknown fill side) raise ``ConfigError``.

The dashboard sends :func:`figure_json` to the browser; a page that has plotly.js inlined
once (``ultrathink.web.html.page``) embeds :func:`figure_div`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from ultrathink.errors import ConfigError
from ultrathink.web.downsample import lttb, minmax_index

__all__ = [
    "COLORS",
    "SERIES",
    "TEMPLATE",
    "bench_history_figure",
    "calibration_figure",
    "compare_equity_figure",
    "equity_figure",
    "exposure_figure",
    "figure_div",
    "figure_json",
    "folds_figure",
    "importances_figure",
    "monthly_returns_figure",
    "prediction_distribution_figure",
    "prediction_histogram_figure",
    "price_fills_figure",
    "roc_figure",
    "stage_shares_figure",
    "trade_pnl_figure",
]

#: the palette: one meaning, one colour, in every chart
COLORS = {
    "equity": "#1f6feb",
    "drawdown": "#d1242f",
    "underwater": "#bf8700",
    "buy": "#1a7f37",
    "sell": "#d1242f",
    "price": "#57606a",
    "exposure": "#8250df",
    "reference": "#8c959f",
    "gain": "#1a7f37",
    "loss": "#d1242f",
}
#: series colours when several of one kind are drawn (compare, folds, benchmarks)
SERIES = (
    "#1f6feb",
    "#d1242f",
    "#1a7f37",
    "#bf8700",
    "#8250df",
    "#0e8a9a",
    "#cf222e",
    "#57606a",
    "#e16f24",
    "#6639ba",
)
_AXIS = {
    "gridcolor": "#eaeef2", "zerolinecolor": "#d0d7de", "linecolor": "#d0d7de", "automargin": True,
}  # fmt: skip
TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": "system-ui, sans-serif", "size": 12, "color": "#24292f"},
        "colorway": list(SERIES),
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"align": "left"},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 45},
    }
)
_NS_PER_DAY = 86_400e9
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DIV_ID = re.compile(r"[A-Za-z][\w-]*\Z")


# -- runs -----------------------------------------------------------------------------------


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


# -- models ---------------------------------------------------------------------------------


def folds_figure(folds: Sequence[Mapping[str, Any]]) -> go.Figure:
    """One subplot per metric across walk-forward folds (``baseline_<metric>`` dashed).

    ``folds`` are dicts with a ``"fold"`` key and numeric metrics, e.g. ``"auc"`` and
    ``"log_loss"``; an undefined value (None, NaN) leaves a gap.
    """
    keys: list[str] = []
    for fold in folds:
        keys += [k for k, v in fold.items() if k not in keys and k != "fold" and _numeric(v)]
    metrics = [k for k in keys if not k.startswith("baseline_")]
    if not folds or not metrics:
        return _empty("no folds")
    names = [str(f.get("fold", i + 1)) for i, f in enumerate(folds)]
    fig = make_subplots(
        rows=len(metrics),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[_label(m) for m in metrics],
    )
    for row, metric in enumerate(metrics, start=1):
        fig.add_trace(
            go.Scatter(
                x=names,
                y=_column(folds, metric),
                mode="lines+markers",
                name=_label(metric),
                line={"color": SERIES[(row - 1) % len(SERIES)]},
            ),
            row=row,
            col=1,
        )
        if f"baseline_{metric}" in keys:
            fig.add_trace(
                go.Scatter(
                    x=names,
                    y=_column(folds, f"baseline_{metric}"),
                    mode="lines+markers",
                    name=f"baseline {_label(metric)}",
                    line={"color": COLORS["reference"], "dash": "dash"},
                ),
                row=row,
                col=1,
            )
        if metric == "auc":
            fig.add_hline(
                y=0.5,
                line_dash="dot",
                line_color=COLORS["reference"],
                row=row,
                col=1,
                annotation_text="chance (0.5)",
            )
    fig.update_xaxes(type="category")  # fold names, even when they read as numbers
    fig.update_xaxes(title_text="fold", row=len(metrics), col=1)
    return _finish(fig, height=120 + 200 * len(metrics), hovermode="x unified")


def roc_figure(
    curves: Sequence[tuple[str, Any, Any, float]], *, max_points: int = 2000
) -> go.Figure:
    """ROC curves, ``(label, fpr, tpr, auc)`` each, with the chance diagonal."""
    fig = go.Figure()
    for i, (label, fpr, tpr, auc) in enumerate(curves):
        x, y = _series(fpr, tpr, f"ROC curve {label!r}")
        x, y = lttb(x, y, _check_max_points(max_points))  # monotone: no extreme to lose
        score = f"AUC {auc:.3f}" if _numeric(auc) and math.isfinite(auc) else "AUC n/a"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=f"{label} ({score})",
                line={"color": SERIES[i % len(SERIES)]},
            )
        )
    if not fig.data:
        return _empty("no ROC curves")
    fig.add_trace(_diagonal("chance"))
    fig.update_layout(
        xaxis={"title": {"text": "false positive rate"}, "range": [0, 1]},
        yaxis={"title": {"text": "true positive rate"}, "range": [0, 1.02]},
    )
    return _finish(fig, height=440)


def calibration_figure(curves: Sequence[tuple[str, Any, Any]]) -> go.Figure:
    """Reliability curves, ``(label, mean_predicted, fraction_positive)`` each."""
    fig = go.Figure()
    for i, (label, predicted, positive) in enumerate(curves):
        x, y = (np.asarray(v, dtype=np.float64) for v in (predicted, positive))
        if x.shape != y.shape:
            raise ConfigError(
                f"calibration curve {label!r}: mean_predicted and "
                f"fraction_positive differ in length ({x.size} vs {y.size})"
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=str(label),
                line={"color": SERIES[i % len(SERIES)]},
            )
        )
    if not fig.data:
        return _empty("no calibration curves")
    fig.add_trace(_diagonal("perfectly calibrated"))
    fig.update_layout(
        xaxis={"title": {"text": "mean predicted probability"}, "range": [0, 1]},
        yaxis={"title": {"text": "fraction of positives"}, "range": [0, 1.02]},
    )
    return _finish(fig, height=440)


def importances_figure(names: Sequence[str], values: Any, *, top: int = 30) -> go.Figure:
    """Horizontal bars of the ``top`` largest importances (by absolute value), largest first."""
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(names) != vals.size:
        raise ConfigError(
            f"importances: {len(names)} names for {vals.size} values; pass one value per feature"
        )
    if vals.size == 0:
        return _empty("no feature importances")
    order = np.argsort(-np.abs(np.nan_to_num(vals, nan=0.0)), kind="stable")[: max(1, top)]
    shown = f"top {order.size} of {vals.size} features" if order.size < vals.size else "feature"
    fig = go.Figure(
        go.Bar(
            x=vals[order],
            y=[str(names[i]) for i in order],
            orientation="h",
            marker_color=COLORS["equity"],
        )
    )
    fig.update_layout(
        yaxis={"autorange": "reversed", "title": {"text": shown}},
        xaxis_title="importance",
        showlegend=False,
    )
    return _finish(fig, height=max(260, 80 + 18 * order.size))


def prediction_distribution_figure(probabilities: Any, *, bins: int = 50) -> go.Figure:
    """Histogram of predicted class-1 probabilities on [0, 1]."""
    p = _finite(probabilities)
    if p.size == 0:
        return _empty("no predictions")
    counts, edges = np.histogram(np.clip(p, 0.0, 1.0), bins=max(1, bins), range=(0.0, 1.0))
    return prediction_histogram_figure(edges, {f"{p.size:,} predictions": counts})


def prediction_histogram_figure(edges: Any, counts: Mapping[str, Any]) -> go.Figure:
    """Predicted class-1 probabilities already binned: ``counts`` maps a label (e.g. the
    rows' true class) to the rows per bin of ``edges``; several labels are stacked."""
    e = np.asarray(edges, dtype=np.float64).reshape(-1)
    series = {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in counts.items()}
    bad = [k for k, v in series.items() if v.size != e.size - 1]
    if bad:
        raise ConfigError(
            f"prediction histogram: {len(e)} edges need {len(e) - 1} counts per series; "
            f"{bad[0]!r} does not have them"
        )
    if not series or e.size < 2 or not sum(float(v.sum()) for v in series.values()):
        return _empty("no predictions")
    fig = go.Figure()
    for i, (label, values) in enumerate(series.items()):
        fig.add_trace(
            go.Bar(
                x=(e[:-1] + e[1:]) / 2,
                y=values,
                width=np.diff(e),
                marker_color=COLORS["equity"] if len(series) == 1 else SERIES[i % len(SERIES)],
                name=label,
                hovertemplate="%{x:.3f}: %{y} rows<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(
        xaxis={"title": {"text": "predicted probability of class 1"}, "range": [0, 1]},
        yaxis_title="rows",
        bargap=0.05,
        barmode="stack",
    )
    return _finish(fig, height=340)


# -- performance ----------------------------------------------------------------------------


def bench_history_figure(
    records: Sequence[Mapping[str, Any]], regressions: Sequence[Any] = ()
) -> go.Figure:
    """One series per benchmark across commits, relative to its first commit shown.

    Parameters
    ----------
    records : sequence of dict
        Lines of ``.bench/results.jsonl`` in file order; those with a ``name``, a ``commit``
        and a numeric ``median`` (``ultrathink bench`` results) are drawn, the last one per
        commit and benchmark. Quick-mode results are their own series.
    regressions : sequence of str or dict
        Regressions to mark. A dict with an integer ``"index"`` (a regression of
        ``web.browse.bench_history``: ``records[index]`` judged against its predecessor) is
        marked on that record's point, anywhere in the history. Names, or
        ``Comparison.to_dict()`` results of ``bench --compare`` (those whose verdict status
        is ``"regression"``), which judge the working tree, are marked on the benchmark's
        latest point.

    Notes
    -----
    Values are in time terms, as ``perf/stats.py`` judges a slowdown: ``median / first`` for
    a time (lower is better), ``first / median`` for a throughput; above 1 is slower.
    """
    series: dict[str, dict[str, Mapping[str, Any]]] = {}
    commits: list[str] = []
    latest: dict[str, tuple[str, str]] = {}
    placed: dict[int, tuple[str, str]] = {}
    for i, rec in enumerate(records):
        median, commit = rec.get("median"), rec.get("commit")
        if not (isinstance(rec.get("name"), str) and isinstance(commit, str) and _numeric(median)):
            continue
        key = rec["name"] + (" (quick)" if rec.get("mode") == "quick" else "")
        x = commit[:10] + ("+dirty" if rec.get("dirty") else "")
        if x not in commits:
            commits.append(x)
        series.setdefault(key, {})[x] = rec
        latest[rec["name"]] = placed[i] = (key, x)
    if not series:
        return _empty("no benchmark results with a median (run `ultrathink bench`)")
    fig = go.Figure()
    firsts: dict[str, Mapping[str, Any]] = {}
    for i, (key, points) in enumerate(series.items()):
        xs = [c for c in commits if c in points]
        firsts[key] = points[xs[0]]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[_ratio(points[x], firsts[key]) for x in xs],
                mode="lines+markers",
                name=key,
                line={"color": SERIES[i % len(SERIES)]},
                text=[_bench_hover(points[c]) for c in xs],
                hovertemplate="%{text}<extra>" + key + "</extra>",
            )
        )
    marks, unplaced = _regression_marks(records, regressions, placed, latest, series)
    if marks:
        fig.add_trace(
            go.Scatter(
                x=[x for _, x, _, _ in marks],
                y=[_ratio(rec, firsts[key]) for key, _, rec, _ in marks],
                mode="markers",
                name="regression (bench --compare)",
                marker={"symbol": "x", "size": 13, "color": COLORS["drawdown"]},
                text=[text for _, _, _, text in marks],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    if unplaced:
        _note(fig, "regressions with no recorded result: " + ", ".join(unplaced))
    fig.add_hline(y=1.0, line_dash="dot", line_color=COLORS["reference"])
    fig.update_layout(
        xaxis={"title": {"text": "commit"}, "type": "category"},
        yaxis_title="vs first commit shown (time terms: above 1 is slower)",
    )
    return _finish(fig, height=460, hovermode="closest")


def _regression_marks(
    records: Sequence[Mapping[str, Any]],
    regressions: Sequence[Any],
    placed: Mapping[int, tuple[str, str]],
    latest: Mapping[str, tuple[str, str]],
    series: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> tuple[list[tuple[str, str, Mapping[str, Any], str]], list[str]]:
    # (series key, commit, the record marked, hover text) of each regression; unplaced names
    marks: list[tuple[str, str, Mapping[str, Any], str]] = []
    seen: set[tuple[str, str]] = set()
    for item in regressions:
        index = item.get("index") if isinstance(item, Mapping) else None
        if isinstance(index, int) and index in placed:
            key, x = placed[index]
            if (key, x) not in seen:
                seen.add((key, x))
                marks.append((key, x, records[index], _regression_hover(key, item)))
    flagged = _regression_names(
        [r for r in regressions if not (isinstance(r, Mapping) and "index" in r)]
    )
    for name in flagged:
        if name in latest and latest[name] not in seen:
            key, x = latest[name]
            seen.add((key, x))
            marks.append((key, x, series[key][x], f"{key}: regression"))
    return marks, [n for n in flagged if n not in latest]


def _regression_hover(key: str, item: Mapping[str, Any]) -> str:
    slowdown, p_value = item.get("slowdown"), item.get("p_value")
    text = f"{key}: regression"
    if _numeric(slowdown):
        text += f", {slowdown:.1%} slower"
    if isinstance(item.get("base_commit"), str):
        text += f" than {item['base_commit'][:10]}"
    if _numeric(p_value):
        text += f" (p={p_value:.2g})"
    return text


def stage_shares_figure(stages: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> go.Figure:
    """The profiler's stages: share of the loop time, and p50/p90/p99 per call.

    ``stages`` is a run profile as ``Profiler.to_json()`` returns it (its ``bottleneck``
    rows, with percentiles from its ``stages`` and ``calls``), or rows ``{"stage", "share",
    "p50_us", "p90_us", "p99_us"}`` (percentiles optional).
    """
    rows = _stage_rows(stages)
    if not rows:
        return _empty("no sampled bars")
    rows.sort(key=lambda r: -float(r.get("share") or 0.0))
    names = [str(r["stage"]) for r in rows]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=(
            "share of the estimated loop time (%)",
            "µs per sampled bar, or per call (log scale)",
        ),
    )
    shares = [100.0 * float(r.get("share") or 0.0) for r in rows]
    fig.add_trace(
        go.Bar(
            x=shares,
            y=names,
            orientation="h",
            marker_color=COLORS["equity"],
            name="share",
            showlegend=False,
            texttemplate="%{x:.1f} %",
            textposition="auto",
        ),
        row=1,
        col=1,
    )
    for i, p in enumerate(("p50", "p90", "p99")):
        xs = [r.get(f"{p}_us") for r in rows]
        fig.add_trace(
            go.Scatter(
                x=[x if _numeric(x) and x > 0 else None for x in xs],
                y=names,
                mode="markers",
                name=p,
                marker={"size": 9, "color": SERIES[i]},
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_layout(legend={"yanchor": "top", "y": -0.06, "x": 0.52})  # below the µs panel
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    return _finish(fig, height=max(280, 100 + 32 * len(rows)), hovermode="closest")


# -- output ---------------------------------------------------------------------------------


def figure_json(fig: go.Figure) -> str:
    """The figure as the JSON the dashboard sends (``plotly.io.to_json``, orjson engine)."""
    try:
        import orjson  # noqa: F401  # the faster engine, when installed
    except ImportError:  # pragma: no cover - orjson is a dependency
        return pio.to_json(fig, validate=False, engine="json")
    return pio.to_json(fig, validate=False, engine="orjson")


def figure_div(fig: go.Figure, div_id: str) -> str:
    """An HTML fragment drawing ``fig`` in a page that already inlines plotly.js."""
    if not _DIV_ID.match(div_id):
        raise ConfigError(
            f"figure div id must be a letter then letters, digits, '_' or '-', was {div_id!r}"
        )
    html: str = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return html


# -- helpers --------------------------------------------------------------------------------


def _series(x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x), np.asarray(y, dtype=np.float64)
    if xa.dtype.kind == "M":
        xa = xa.astype("datetime64[ns]").view(np.int64)
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise ConfigError(
            f"{what}: times and values must be 1-d arrays of one length, had "
            f"shapes {xa.shape} and {ya.shape}"
        )
    return xa, ya


def _dates(ts_ns: np.ndarray) -> np.ndarray:
    return ts_ns.astype(np.int64).astype("datetime64[ns]")


def _check_max_points(max_points: int) -> int:
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 4:
        raise ConfigError(f"max_points must be an integer >= 4, was {max_points!r}")
    return max_points


def _reduce_index(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray | None:
    # min/max per bucket: (max_points - 2) // 2 buckets plus the first and the last point
    if x.size <= _check_max_points(max_points):
        return None
    return minmax_index(y, (max_points - 2) // 2)


def _line(
    ts: np.ndarray, y: np.ndarray, name: str, color: str, max_points: int, fill: bool = False
) -> go.Scatter:
    keep = _reduce_index(ts, y, max_points)
    if keep is not None:
        ts, y = ts[keep], y[keep]
    return go.Scatter(
        x=_dates(ts),
        y=y,
        mode="lines",
        name=name,
        line={"color": color, "width": 1.2},
        fill="tozeroy" if fill else None,
    )


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


def _finite(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return arr[np.isfinite(arr)]


def _edges(values: np.ndarray, max_bins: int) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:  # one value: one bin around it
        pad = abs(lo) * 0.01 or 0.5
        return np.array([lo - pad, hi + pad])
    edges = np.histogram_bin_edges(values, bins="auto")
    return edges if edges.size - 1 <= max_bins else np.linspace(lo, hi, max_bins + 1)


def _numeric(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    out: list[float | None] = []
    for row in rows:
        v = row.get(key)
        out.append(float(v) if _numeric(v) and math.isfinite(v) else None)
    return out


def _label(metric: str) -> str:
    return {"auc": "AUC", "log_loss": "log loss"}.get(metric, metric.replace("_", " "))


def _diagonal(name: str) -> go.Scatter:
    return go.Scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name=name,
        line={"dash": "dash", "color": COLORS["reference"]},
    )


def _ratio(rec: Mapping[str, Any], first: Mapping[str, Any]) -> float | None:
    # the record against its series' first point, in time terms (a throughput is inverted)
    num, den = float(rec["median"]), float(first["median"])
    if not rec.get("lower_is_better", True):  # a throughput: slower is smaller
        num, den = den, num
    return num / den if den and math.isfinite(num / den) else None


def _bench_hover(rec: Mapping[str, Any]) -> str:
    when = rec.get("date_utc") or rec.get("time") or ""
    return (
        f"{rec.get('commit', '')[:10]} {when}<br>median {rec['median']:.6g} {rec.get('unit', '')}"
    )


def _regression_names(regressions: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for raw in regressions:
        item = raw.to_dict() if hasattr(raw, "to_dict") else raw  # a perf.compare.Comparison
        if isinstance(item, str):
            names.append(item)
            continue
        verdict = item.get("verdict") if isinstance(item, Mapping) else None
        status = verdict.get("status") if isinstance(verdict, Mapping) else None
        if status == "regression" and isinstance(item.get("name"), str):
            names.append(item["name"])
    return list(dict.fromkeys(names))


def _stage_rows(stages: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(stages, Mapping):
        return [dict(r) for r in stages if "stage" in r]
    summaries = {**stages.get("calls", {}), **stages.get("stages", {})}
    rows = []
    for row in stages.get("bottleneck", []):
        summary = summaries.get(row["stage"], {})
        rows.append({**{k: summary.get(k) for k in ("p50_us", "p90_us", "p99_us")}, **row})
    return rows


def _note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 14, "color": COLORS["reference"]},
    )


def _empty(text: str) -> go.Figure:
    fig = go.Figure()
    _note(fig, text)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _finish(fig, height=220)


def _finish(fig: go.Figure, *, height: int, hovermode: str = "closest") -> go.Figure:
    fig.update_layout(template=TEMPLATE, height=height, hovermode=hovermode)
    return fig
