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

This module is the one place to import them from; they live by page: ``chart_kit`` (template,
palette, output, helpers), ``charts_runs``, ``charts_models`` and ``charts_perf``.
"""

from __future__ import annotations

from ultrathink.web.chart_kit import COLORS, SERIES, TEMPLATE, figure_div, figure_json
from ultrathink.web.charts_models import (
    calibration_figure,
    folds_figure,
    importances_figure,
    prediction_distribution_figure,
    prediction_histogram_figure,
    roc_figure,
)
from ultrathink.web.charts_perf import bench_history_figure, stage_shares_figure
from ultrathink.web.charts_runs import (
    compare_equity_figure,
    equity_figure,
    exposure_figure,
    monthly_returns_figure,
    price_fills_figure,
    trade_pnl_figure,
)

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
