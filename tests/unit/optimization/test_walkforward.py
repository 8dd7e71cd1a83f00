"""Walk-forward windows and the metrics of a slice of one run."""

from __future__ import annotations

import numpy as np
import pytest

from ultrathink import services
from ultrathink.data import load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.errors import ConfigError
from ultrathink.optimization.walkforward import (
    bucketed_returns,
    make_windows,
    parse_objectives,
    slice_metrics,
    window_scores,
)


def test_anchored_and_rolling_windows_cut_the_timeline_into_equal_segments() -> None:
    anchored = make_windows(500, 4, "anchored")
    assert [(w.is_start, w.is_stop, w.oos_start, w.oos_stop) for w in anchored] == [
        (0, 100, 100, 200),
        (0, 200, 200, 300),
        (0, 300, 300, 400),
        (0, 400, 400, 500),
    ]
    rolling = make_windows(503, 4, "rolling")
    assert [(w.is_start, w.is_stop) for w in rolling] == [
        (0, 100),
        (100, 200),
        (200, 300),
        (300, 400),
    ]
    assert rolling[-1].oos_stop == 503  # the remainder goes to the last window


def test_too_little_data_for_the_windows_is_refused() -> None:
    with pytest.raises(ConfigError, match="too few"):
        make_windows(90, 4, "anchored")
    with pytest.raises(ConfigError, match="at least 1"):
        make_windows(900, 0, "anchored")


def test_a_slice_over_the_whole_run_gives_the_runs_own_metrics() -> None:
    data = load_data("synthetic:n_bars=3000,seed=3")
    result = services.run_strategy(
        SmaCross(fast=5, slow=20), data, services.engine_config(realistic=True)
    )
    exit_ns = np.array([t.exit_ns for t in result.trades])
    pnl = np.array([t.pnl for t in result.trades])
    m = result.metrics
    whole = slice_metrics(
        result.ts_ns, result.equity, exit_ns, pnl, 0, len(result.equity), m.periods_per_year
    )
    assert whole["sharpe"] == pytest.approx(m.sharpe, rel=1e-9)
    assert whole["sortino"] == pytest.approx(m.sortino, rel=1e-9)
    assert whole["total_return"] == pytest.approx(m.total_return, rel=1e-9)
    assert whole["max_drawdown"] == pytest.approx(m.max_drawdown, rel=1e-9)
    assert whole["n_trades"] == m.n_trades
    # the out-of-sample segments chain into the run's return after the first segment
    scores = window_scores(result, make_windows(len(result.equity), 3, "anchored"))
    chained = np.prod([1 + s["oos"]["total_return"] for s in scores])
    start = len(result.equity) // 4
    assert chained == pytest.approx(result.equity[-1] / result.equity[start - 1], rel=1e-9)


def test_returns_are_kept_per_bar_or_summed_into_equal_buckets() -> None:
    equity = np.cumprod(np.full(101, 1.01))
    assert len(bucketed_returns(equity, 200)) == 100
    buckets = bucketed_returns(equity, 10)
    assert len(buckets) == 10 and buckets.sum() == pytest.approx(100 * 0.01)


def test_objectives_are_checked() -> None:
    assert parse_objectives("sharpe, max_drawdown") == ("sharpe", "max_drawdown")
    for bad, message in (("", "empty"), ("alpha", "can optimise"), ("sharpe,sharpe", "twice")):
        with pytest.raises(ConfigError, match=message):
            parse_objectives(bad)
