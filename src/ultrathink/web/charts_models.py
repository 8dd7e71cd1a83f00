"""Charts of a model (``web/charts.py``): walk-forward folds, ROC and calibration curves,
feature importances, and the distribution of predicted probabilities (raw or already binned,
as a registry version keeps them in ``oos.npz``). ROC curves, monotone, are reduced with LTTB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ultrathink.errors import ConfigError
from ultrathink.web.chart_kit import (
    COLORS,
    SERIES,
    _check_max_points,
    _column,
    _diagonal,
    _empty,
    _finish,
    _finite,
    _label,
    _numeric,
    _series,
)
from ultrathink.web.downsample import lttb

__all__ = [
    "calibration_figure",
    "folds_figure",
    "importances_figure",
    "prediction_distribution_figure",
    "prediction_histogram_figure",
    "roc_figure",
]


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
