"""The common ground of the dashboard's and the reports' plotly figures (``web/charts.py``):
one template and one palette, the JSON and HTML outputs, and the helpers every chart module
uses (input checks, server-side downsampling of a line, the "nothing to draw" figure).

Time series are reduced to at most ``max_points`` points per trace with
:func:`ultrathink.web.downsample.minmax_index`, which keeps every extreme (a drawdown trough
is never hidden). Malformed inputs (arrays of different lengths) raise ``ConfigError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from ultrathink.errors import ConfigError
from ultrathink.web.downsample import minmax_index

__all__ = [
    "COLORS",
    "SERIES",
    "TEMPLATE",
    "figure_div",
    "figure_json",
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

_DIV_ID = re.compile(r"[A-Za-z][\w-]*\Z")


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
