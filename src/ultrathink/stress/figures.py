"""The report's plotly figures: equity with and without protection, time series, bars.

Plain ``plotly.graph_objects`` over numpy arrays and lists; each figure is small (a scenario's
series are short), so nothing is down-sampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

_COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#bf8700", "#8250df", "#57606a")


def equity_comparison(
    curves: Sequence[tuple[str, Any, Any]], marks: Sequence[tuple[int, str]] = ()
) -> go.Figure:
    """Equity curves ``(label, ts_ns, equity)`` on one time axis; ``marks`` are vertical
    lines ``(ts_ns, label)`` (e.g. the halt)."""
    fig = go.Figure()
    for i, (label, ts, equity) in enumerate(curves):
        fig.add_trace(
            go.Scatter(
                x=_dates(ts),
                y=np.asarray(equity, dtype=float),
                mode="lines",
                name=label,
                line={"color": _COLORS[i % len(_COLORS)], "width": 1.4},
            )
        )
    for ts, label in marks:
        x = _dates([ts])[0]
        fig.add_vline(x=x, line={"color": "#57606a", "dash": "dot"})
        fig.add_annotation(x=x, y=1, yref="paper", text=label, showarrow=False, yanchor="bottom")
    return _finish(fig, "time (UTC)", "equity", height=320)


def series_figure(
    times_s: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    x_title: str,
    bands: Sequence[tuple[float, float, str]] = (),
) -> go.Figure:
    """Several series over one time axis (one y axis each, stacked); ``bands`` shade spans
    ``(start_s, end_s, label)`` such as the contention phase."""
    from plotly.subplots import make_subplots

    names = list(series)
    fig = make_subplots(
        rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names, vertical_spacing=0.08
    )
    for i, name in enumerate(names, start=1):
        fig.add_trace(
            go.Scatter(
                x=list(times_s),
                y=list(series[name]),
                mode="lines",
                line_shape="hv",  # a reading holds until the next one
                name=name,
                line={"color": _COLORS[(i - 1) % len(_COLORS)], "width": 1.4},
            ),
            row=i,
            col=1,
        )
    for start, end, label in bands:
        fig.add_vrect(
            x0=start,
            x1=end,
            fillcolor="#d1242f",
            opacity=0.08,
            line_width=0,
            annotation_text=label,
            annotation_position="top left",
        )
    fig.update_xaxes(title_text=x_title, row=len(names), col=1)
    fig.update_layout(showlegend=False)
    return _finish(fig, None, None, height=180 * len(names) + 60)


def bars_figure(labels: Sequence[str], groups: Mapping[str, Sequence[float]], y: str) -> go.Figure:
    """Grouped bars: one group per label, one bar per series of ``groups``."""
    fig = go.Figure()
    for i, (name, values) in enumerate(groups.items()):
        fig.add_trace(
            go.Bar(
                x=list(labels), y=list(values), name=name, marker_color=_COLORS[i % len(_COLORS)]
            )
        )
    fig.update_layout(barmode="group")
    return _finish(fig, None, y, height=320)


def _dates(ts_ns: Any) -> np.ndarray:
    return np.asarray(ts_ns, dtype=np.int64).astype("datetime64[ns]")


def _finish(fig: go.Figure, x: str | None, y: str | None, *, height: int) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 45},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title=x,
        yaxis_title=y,
    )
    return fig
