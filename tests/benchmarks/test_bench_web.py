"""Downsampling for drawing (``make bench``): 1,000,000 points to 2,000 in a few milliseconds.

Measured in one job, so the figures compare: ``minmax`` (the chart layer's choice) and
``lttb`` on a 1,000,000-point random-walk equity curve with int64 ns times, against strided
decimation (``x[::step]``, what the old PNG report drew), the floor any downsampler pays for
touching its output. Order alternates every round so host drift hits all alike; figures are
the median and p99 of the rounds, in milliseconds, each call including its input checks. The
chart itself (``equity_figure`` from 1,000,000 points, three traces, then ``figure_json``) is
timed too: what the dashboard pays per request for a run's equity page.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ultrathink.web import charts
from ultrathink.web.downsample import lttb, minmax

pytestmark = pytest.mark.bench

N_POINTS = 1_000_000
N_OUT = 2_000
ROUNDS = 200
FIGURE_ROUNDS = 20
BUDGET_MS = 25.0  # per downsampling call, median: well inside one frame of a page's update


def _ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) / 1e6


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 3),
        "p99": round(float(np.percentile(samples, 99)), 3),
    }


def test_downsampling_a_million_points(record: Callable[[str, dict[str, Any]], None]) -> None:
    rng = np.random.default_rng(11)
    ts = 1_577_836_800 * 10**9 + np.arange(N_POINTS, dtype=np.int64) * 60 * 10**9
    equity = 1e5 * np.exp(np.cumsum(rng.normal(0, 1e-3, N_POINTS)))
    step = N_POINTS // N_OUT
    cases: dict[str, Callable[[], object]] = {
        "minmax": lambda: minmax(ts, equity, (N_OUT - 2) // 2),
        "lttb": lambda: lttb(ts, equity, N_OUT),
        "strided_reference": lambda: (ts[::step].copy(), equity[::step].copy()),
    }
    for fn in cases.values():  # warm-up: numba's cached machine code, page faults
        fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for i in range(ROUNDS):
        for name in names if i % 2 == 0 else names[::-1]:
            samples[name].append(_ms(cases[name]))

    x_out, y_out = minmax(ts, equity, (N_OUT - 2) // 2)
    assert x_out.size <= N_OUT and y_out.min() == equity.min() and y_out.max() == equity.max()
    assert lttb(ts, equity, N_OUT)[0].size == N_OUT

    def figure() -> str:
        return charts.figure_json(charts.equity_figure(ts, equity, max_points=N_OUT))

    figure()
    figure_ms = [_ms(figure) for _ in range(FIGURE_ROUNDS)]

    stats = {name: _summary(values) for name, values in samples.items()}
    ref = stats["strided_reference"]["median"]
    record(
        "web.downsample_1m_to_2k",
        {
            "n_points": N_POINTS,
            "n_out": N_OUT,
            "rounds": ROUNDS,
            "ms": stats,
            "minmax_over_strided_median": round(stats["minmax"]["median"] / ref, 1),
            "lttb_over_strided_median": round(stats["lttb"]["median"] / ref, 1),
            "equity_figure_json_ms": _summary(figure_ms),
            "budget_median_ms": BUDGET_MS,
        },
    )
    assert stats["minmax"]["median"] <= BUDGET_MS
    assert stats["lttb"]["median"] <= BUDGET_MS
